//! Xen system time: nanoseconds since boot from vcpu_time_info and the TSC.

/// Scales a TSC delta to nanoseconds as Xen public/xen.h describes for vcpu_time_info:
/// shift by `tsc_shift`, then multiply by `tsc_to_system_mul` as a 32.32 fixed-point fraction.
pub fn scale_delta(delta_tsc: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 { delta_tsc << shift } else { delta_tsc >> (-shift) };
    ((u128::from(shifted) * u128::from(mul)) >> 32) as u64
}

/// Reads the running vCPU's time record consistently (retrying while Xen updates it) and returns the
/// current system time in ns.
#[cfg(target_os = "none")]
pub fn now_ns() -> u64 {
    use core::ptr::read_volatile;
    use core::sync::atomic::{fence, Ordering};
    let Some(time) = super::shared_info::own_time() else { return 0 };
    loop {
        // SAFETY: `time` points into the mapped shared_info page; fields are read volatile
        // because Xen rewrites them, and the version protocol below detects torn reads.
        let (v1, stamp, system, mul, shift) = unsafe {
            let v1 = read_volatile(core::ptr::addr_of!((*time).version));
            fence(Ordering::Acquire);
            (
                v1,
                read_volatile(core::ptr::addr_of!((*time).tsc_timestamp)),
                read_volatile(core::ptr::addr_of!((*time).system_time)),
                read_volatile(core::ptr::addr_of!((*time).tsc_to_system_mul)),
                read_volatile(core::ptr::addr_of!((*time).tsc_shift)),
            )
        };
        let tsc = rdtsc();
        fence(Ordering::Acquire);
        // SAFETY: as above.
        let v2 = unsafe { read_volatile(core::ptr::addr_of!((*time).version)) };
        if v1 % 2 == 0 && v1 == v2 {
            return system.wrapping_add(scale_delta(tsc.wrapping_sub(stamp), mul, shift));
        }
    }
}

/// The time-stamp counter; unprivileged unless the kernel sets CR4.TSD, which Xen does not
/// do for PV guests by default.
#[cfg(target_os = "none")]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc reads a counter into edx:eax and has no other effect.
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

#[cfg(test)]
mod tests {
    use super::scale_delta;

    #[test]
    fn scaling_follows_the_fixed_point_rule() {
        // mul = 2^31 is a factor of 0.5.
        assert_eq!(scale_delta(1000, 1 << 31, 0), 500);
        assert_eq!(scale_delta(1000, 1 << 31, 1), 1000);
        assert_eq!(scale_delta(1000, 1 << 31, -1), 250);
        // A 3 GHz TSC: 1/3 ns per tick.
        let mul = ((1u64 << 32) / 3) as u32;
        assert!((scale_delta(3_000_000_000, mul, 0) as i64 - 1_000_000_000).abs() < 2);
        // No overflow for a large delta.
        assert_eq!(
            scale_delta(u64::MAX >> 1, u32::MAX, 0),
            ((u128::from(u64::MAX >> 1) * u128::from(u32::MAX)) >> 32) as u64
        );
    }
}
