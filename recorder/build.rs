// Bind every symbol of the preload library at load time (`-z now`): the writer thread then
// never goes through the dynamic linker's lazy binding while an application thread may hold
// the loader lock (inside dlopen, say) and wait for the writer.
fn main() {
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,now");
    println!("cargo:rerun-if-changed=build.rs");
}
