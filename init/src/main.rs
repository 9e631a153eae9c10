use stratos_init::{boot, console, linux::LinuxSys, sys::Sys};

fn main() {
    let mut sys = LinuxSys::default();
    // A panic is a bug, but PID 1 must still end the machine cleanly rather than let the kernel
    // panic: report it and power off (the hook runs before the abort).
    std::panic::set_hook(Box::new(|info| {
        let mut sys = LinuxSys::default();
        console::log(&mut sys, &format!("fatal: internal error: {info}"));
        sys.power_off();
    }));
    if std::process::id() != 1 {
        console::log(
            &mut sys,
            "fatal: stratos-init must run as PID 1 (it is the init of a StratOS image, not a command)",
        );
        std::process::exit(2);
    }
    boot::boot(&mut sys);
    sys.power_off();
}
