//! `eventi mount MOUNTPOINT [SNAP[:PATH] | CAPABILITY]`: backups as a
//! read-only FUSE filesystem, until Ctrl-C, SIGTERM or `fusermount3 -u`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use eventi::browse::fuse::BrowseFs;
use fuser::MountOption;

/// Options of `eventi mount`.
#[derive(clap::Args)]
pub struct Args {
    /// An existing directory to mount on.
    mountpoint: std::path::PathBuf,
    #[command(flatten)]
    source: super::browsing::Source,
    /// Let other users read the mount too (`user_allow_other` must be
    /// set in /etc/fuse.conf for a user other than root).
    #[arg(long)]
    allow_other: bool,
}

/// Whether `e` is the kernel's answer at a mount whose process is gone.
fn is_stale(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTCONN)
}

fn stale(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is a stale mount, left by a mount process that was killed: run `fusermount3 -u {}` and mount again",
        dir.display(),
        dir.display()
    )
}

/// Refuses a mount point that is not a directory, or that a killed
/// mount left behind (the kernel answers ENOTCONN there; a stat may still
/// be answered from the kernel's cache, a listing is not).
fn check_mountpoint(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) if is_stale(&e) => return Err(stale(dir)),
        Err(e) => return Err(e).with_context(|| format!("mount point {}", dir.display())),
    }
    match std::fs::read_dir(dir) {
        Err(e) if is_stale(&e) => Err(stale(dir)),
        _ => Ok(()),
    }
}

/// Waits for Ctrl-C or SIGTERM, then unmounts; if the mount is busy (a
/// shell inside it), says so and waits for the next signal.
fn unmount_on_signal(mut unmounter: fuser::SessionUnmounter, mountpoint: String) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // Registered here, before the mount is announced: a signal that comes
    // at once must not find the default action (ending the process with
    // the mount left behind).
    let signals = {
        let _in_runtime = rt.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    let (Ok(mut int), Ok(mut term)) = signals else {
        return;
    };
    std::thread::spawn(move || {
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                match unmounter.unmount() {
                    Ok(()) => return,
                    Err(e) => eprintln!(
                        "eventi: could not unmount {mountpoint} ({e}); leave it (close what uses it) and try again"
                    ),
                }
            }
        });
    });
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_mountpoint(&args.mountpoint)?;
    let opened = super::browsing::open(&args.source)?;
    let fs = BrowseFs::new(opened.browser.clone());
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("eventi".into()),
        MountOption::Subtype("eventi".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if args.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    // Several requests at once: reads of different files, and a reader's
    // requests while read-ahead fetches.
    config.n_threads = Some(8);
    let shown = args.mountpoint.display().to_string();
    let mut session = fuser::Session::new(fs, &args.mountpoint, &config).with_context(|| {
        format!("mounting on {shown} (is fuse3 installed, and /dev/fuse there?)")
    })?;
    unmount_on_signal(session.unmount_callable(), shown.clone());
    eprintln!(
        "eventi: mounted {} on {shown}; Ctrl-C or `fusermount3 -u {shown}` unmounts",
        opened.what
    );
    session
        .run()
        .with_context(|| format!("serving the mount on {shown}"))?;
    opened.finish(&format!("unmounted {shown}"))?;
    Ok(ExitCode::SUCCESS)
}
