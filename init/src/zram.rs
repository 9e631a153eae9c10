//! Compressed swap on zram0, sized from the profile.

use stratos_wire::ZramSize;

use crate::console::log;
use crate::error::{InitError, ZramError};
use crate::meminfo::mem_total;
use crate::paths::ZRAM_DEV;
use crate::sys::Sys;

/// The sysfs writes that configure zram0, in order.
pub fn zram_plan(z: &stratos_wire::Zram, mem_total: u64) -> Vec<(String, String)> {
    let bytes = zram_bytes(z, mem_total);
    vec![
        (
            "/sys/block/zram0/comp_algorithm".into(),
            z.algorithm.clone(),
        ),
        ("/sys/block/zram0/disksize".into(), bytes.to_string()),
    ]
}

/// The size of zram0 in bytes: the profile's size, whole pages.
pub fn zram_bytes(z: &stratos_wire::Zram, mem_total: u64) -> u64 {
    let bytes = match z.size {
        ZramSize::Bytes(b) => b,
        ZramSize::PercentOfRam(p) => mem_total / 100 * u64::from(p),
    };
    bytes / 4096 * 4096
}

/// The first page of a Linux swap area (`mkswap`): version 1, the last usable page, no bad
/// pages, and the `SWAPSPACE2` signature at the end of the page.
pub fn swap_header(bytes: u64) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    let last_page = (bytes / 4096).saturating_sub(1) as u32;
    page[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    page[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    page[4086..4096].copy_from_slice(b"SWAPSPACE2");
    page
}

fn setup_zram<S: Sys>(sys: &mut S, z: &stratos_wire::Zram) -> Result<(), ZramError> {
    let meminfo = sys
        .read_file("/proc/meminfo")
        .map_err(ZramError::ReadMeminfo)?;
    let total = mem_total(&String::from_utf8_lossy(&meminfo)).ok_or(ZramError::NoMemTotal)?;
    for (path, value) in zram_plan(z, total) {
        sys.write_file(&path, value.as_bytes())
            .map_err(|source| ZramError::Write {
                path,
                value,
                source,
            })?;
    }
    let size = zram_bytes(z, total);
    sys.write_file(ZRAM_DEV, &swap_header(size))
        .map_err(ZramError::SwapSignature)?;
    sys.swapon(ZRAM_DEV, z.priority)
        .map_err(ZramError::Swapon)?;
    log(
        sys,
        &format!(
            "zram: {} MiB of {} swap at priority {}",
            size >> 20,
            z.algorithm,
            z.priority
        ),
    );
    Ok(())
}

/// zram that fails is fatal only when the profile requires it; otherwise a warning.
pub fn setup_zram_unless_optional<S: Sys>(
    sys: &mut S,
    z: &stratos_wire::Zram,
) -> Result<(), InitError> {
    match setup_zram(sys, z) {
        Ok(()) => Ok(()),
        Err(e) if z.required => Err(InitError::ZramRequired(e)),
        Err(e) => {
            log(sys, &format!("warning: zram: {e}; continuing without swap"));
            Ok(())
        }
    }
}
