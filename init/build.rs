//! Release builds of `stratos-init` drop every symbol at link time. Cargo's `strip = true` leaves
//! glibc's static symbol table in a static-pie binary; `--strip-all` removes it (~0.2 MB), which
//! keeps the PID 1 under its 1.5 MiB budget. Debug builds keep their symbols.
fn main() {
    println!("cargo:rerun-if-env-changed=PROFILE");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
    }
}
