//! Facts about the machine, read in one place: the recorder writes them into
//! `header.json`, the packer into an archive's manifest (`packed_on`).
//!
//! Each is read once per process: reading /proc/cpuinfo asks every CPU for its
//! frequency (an interrupt to each), which a hunt paid at every run. An unreadable fact
//! is an empty string.

use std::sync::OnceLock;

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The host name (`/proc/sys/kernel/hostname`, what `uname -n` says).
pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

/// The kernel's release and version (`uname -rv`).
pub fn kernel_version() -> String {
    static KERNEL: OnceLock<String> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            format!(
                "{} {}",
                read_trimmed("/proc/sys/kernel/osrelease"),
                read_trimmed("/proc/sys/kernel/version")
            )
        })
        .clone()
}

/// The CPU's model name, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    static MODEL: OnceLock<String> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn facts_are_read() {
        assert!(!super::hostname().is_empty());
        let kernel = super::kernel_version();
        assert!(kernel.split(' ').count() >= 2, "{kernel}");
        assert!(!kernel.starts_with(' '), "{kernel}");
    }
}
