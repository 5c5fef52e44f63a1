//! `urunc-pack`: the command line of the packer; everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use urunc_pack::{PackOptions, DEFAULT_MONITOR};

#[derive(Parser, Debug)]
#[command(
    name = "urunc-pack",
    // --version is the unikernel's version, as in the reference tooling.
    disable_version_flag = true,
    about = "Pack a unikernel (or a Linux kernel and initrd) into an OCI image archive for urunc",
    after_help = concat!(
        "The image holds the kernel and initrd under /boot, the --rootfs files, and\n",
        "/urunc.json with the com.urunc.unikernel.* keys (values base64-encoded, as the\n",
        "reference tooling writes them); the same keys are image labels and manifest\n",
        "annotations. Import the archive with `ctr images import`, `docker load` or `podman load`.\n\n",
        "Example:\n",
        "  urunc-pack --kernel vmlinux --initrd initrd.cpio --type linux \\\n",
        "      --cmd /bin/report --cmd hello --name urunc.local/demo/hello:latest --output hello.tar\n\n",
        "From a Containerfile: urunc-pack build -f Containerfile -o image.tar (see urunc-pack build --help)"
    )
)]
struct Cli {
    /// The kernel: a unikernel binary or a Linux vmlinux (stored as /boot/<file name>)
    #[arg(long, value_name = "PATH")]
    kernel: PathBuf,
    /// An initrd for the guest (stored as /boot/<file name>)
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// The guest type (com.urunc.unikernel.unikernelType), e.g. linux or unikraft
    #[arg(long = "type", value_name = "TYPE")]
    unikernel_type: String,
    /// The monitor that boots it (com.urunc.unikernel.hypervisor)
    #[arg(long, value_name = "NAME", default_value = DEFAULT_MONITOR)]
    monitor: String,
    /// Guest arguments used when the container has none (com.urunc.unikernel.cmdline)
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    /// The unikernel framework's version (com.urunc.unikernel.unikernelVersion)
    #[arg(long, value_name = "STR")]
    version: Option<String>,
    /// The QEMU machine the kernel boots on, e.g. microvm for a kernel that can
    /// (com.urunc.unikernel.qemuMachine; without it the host's configuration decides)
    #[arg(long, value_name = "MACHINE")]
    qemu_machine: Option<String>,
    /// A directory whose contents are added at the image root
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// An environment variable of the image (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// One argument of the image's Cmd (repeatable, in order)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// The image reference [default: urunc.local/<kernel file name>:latest]
    #[arg(long, value_name = "REF")]
    name: Option<String>,
    /// The OCI image archive to write
    #[arg(long, short, value_name = "FILE.tar")]
    output: PathBuf,
}

/// `urunc-pack build`: an image from a Containerfile.
#[derive(Parser, Debug)]
#[command(
    name = "urunc-pack build",
    about = "Build a urunc image from a Containerfile",
    after_help = concat!(
        "Instructions: FROM scratch | FROM <image tar or OCI layout dir>, COPY src... dst,\n",
        "LABEL com.urunc.unikernel.<key>=value, ENV, CMD, ENTRYPOINT, WORKDIR, USER.\n",
        "Required labels: com.urunc.unikernel.unikernelType and com.urunc.unikernel.binary\n",
        "(hypervisor defaults to qemu). A base image keeps its layers, entrypoint, cmd and env.\n\n",
        "Example Containerfile:\n",
        "  FROM scratch\n",
        "  COPY testkernel.elf /boot/kernel\n",
        "  LABEL com.urunc.unikernel.unikernelType=unikraft com.urunc.unikernel.binary=/boot/kernel\n",
        "  CMD [\"hello\"]"
    )
)]
struct BuildCli {
    /// The Containerfile
    #[arg(
        long = "file",
        short = 'f',
        value_name = "FILE",
        default_value = "Containerfile"
    )]
    file: PathBuf,
    /// Directory of COPY sources and relative FROM paths [default: the file's directory]
    #[arg(long, value_name = "DIR")]
    context: Option<PathBuf>,
    /// The image reference [default: urunc.local/<binary file name>:latest]
    #[arg(long, value_name = "REF")]
    name: Option<String>,
    /// The OCI image archive to write
    #[arg(long, short, value_name = "FILE.tar")]
    output: PathBuf,
}

fn fail(e: anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}").replace('\n', " ");
    eprintln!("urunc-pack: error: {msg}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "build") {
        let cli = BuildCli::parse_from(std::env::args_os().skip(1));
        let opts = urunc_pack::BuildOptions {
            file: cli.file,
            context: cli.context,
            name: cli.name,
        };
        return match opts.pack(&cli.output) {
            Ok(p) => {
                println!(
                    "{}: {} ({} guest on {}, kernel {}, manifest {})",
                    cli.output.display(),
                    p.reference,
                    p.config[urunc::unikernel::KEY_TYPE],
                    p.config[urunc::unikernel::KEY_HYPERVISOR],
                    p.config[urunc::unikernel::KEY_BINARY],
                    p.image.manifest.digest
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let cli = Cli::parse();
    let opts = PackOptions {
        kernel: cli.kernel,
        initrd: cli.initrd,
        unikernel_type: cli.unikernel_type,
        monitor: cli.monitor,
        cmdline: cli.cmdline,
        version: cli.version,
        qemu_machine: cli.qemu_machine,
        rootfs: cli.rootfs,
        env: cli.env,
        cmd: cli.cmd,
        name: cli.name,
    };
    match opts.pack(&cli.output) {
        Ok(p) => {
            println!(
                "{}: {} ({} guest on {}, kernel {}, manifest {})",
                cli.output.display(),
                p.reference,
                p.config[urunc::unikernel::KEY_TYPE],
                p.config[urunc::unikernel::KEY_HYPERVISOR],
                p.config[urunc::unikernel::KEY_BINARY],
                p.image.manifest.digest
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
        BuildCli::command().debug_assert();
        assert_eq!(
            urunc_pack::BOOT_DIR,
            "/boot",
            "the help text names the boot directory"
        );
    }

    #[test]
    fn repeated_flags_keep_their_order() {
        let cli = Cli::try_parse_from([
            "urunc-pack",
            "--kernel",
            "k",
            "--type",
            "linux",
            "--cmd",
            "/bin/report",
            "--cmd",
            "-v",
            "--env",
            "A=1",
            "--env",
            "B=2",
            "-o",
            "x.tar",
        ])
        .unwrap();
        assert_eq!(cli.cmd, ["/bin/report", "-v"]);
        assert_eq!(cli.env, ["A=1", "B=2"]);
        assert_eq!(cli.monitor, "qemu");
    }
}
