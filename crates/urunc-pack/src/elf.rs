//! The image platform of a kernel: from its ELF header when it is an ELF file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The architecture (GOARCH terms) an ELF kernel is built for, `None` when the file is
/// not ELF (a bzImage, say) or is for a machine not listed here.
pub fn architecture(path: &Path) -> std::io::Result<Option<&'static str>> {
    let mut header = [0u8; 20];
    let mut file = File::open(path)?;
    let mut got = 0;
    while got < header.len() {
        match file.read(&mut header[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(from_header(&header[..got]))
}

fn from_header(h: &[u8]) -> Option<&'static str> {
    if h.len() < 20 || h[..4] != *b"\x7fELF" {
        return None;
    }
    let class64 = h[4] == 2;
    let machine = match h[5] {
        1 => u16::from_le_bytes([h[18], h[19]]),
        2 => u16::from_be_bytes([h[18], h[19]]),
        _ => return None,
    };
    Some(match (machine, class64) {
        (0x3e, _) => "amd64",
        (0x03, false) => "386",
        (0xb7, _) => "arm64",
        (0x28, false) => "arm",
        (0xf3, true) => "riscv64",
        (0x15, true) => "ppc64le",
        (0x16, true) => "s390x",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.extend_from_slice(&[class, data, 1]);
        h.resize(18, 0);
        h.extend_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn recognises_machines() {
        assert_eq!(from_header(&header(2, 1, 0x3e)), Some("amd64"));
        assert_eq!(from_header(&header(2, 1, 0xb7)), Some("arm64"));
        assert_eq!(from_header(&header(2, 1, 0x9999)), None);
        assert_eq!(from_header(b"MZ not an elf file at all"), None);
        assert_eq!(from_header(b"\x7fELF"), None);
    }
}
