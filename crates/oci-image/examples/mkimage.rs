//! Packs a host directory into an OCI archive:
//! `cargo run -p oci-image --example mkimage -- OUT.tar REF DIR [ENTRYPOINT...]`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, reference, dir, entrypoint @ ..] = args.as_slice() else {
        return Err("usage: mkimage OUT.tar REF DIR [ENTRYPOINT...]".into());
    };
    let mut image = oci_image::ImageBuilder::new();
    image.add_tree(dir, "/")?;
    if !entrypoint.is_empty() {
        image.entrypoint(entrypoint);
    }
    let built = image.write_oci_archive(out, reference)?;
    println!("{} {}", reference, built.manifest.digest);
    Ok(())
}
