//! With no matching adapter the engine returns an error that says what is missing and how to get
//! a driver, instead of panicking. (Its own binary: it sets process-wide environment variables.)

#[test]
fn a_missing_adapter_is_a_clear_error() {
    std::env::set_var("WGPU_ADAPTER_NAME", "no adapter is called this");
    let err = engine::GpuContext::new().err().expect("no adapter can match that name");
    let message = err.to_string();
    assert!(message.starts_with("no GPU adapter"), "{message}");
    assert!(message.contains("WGPU_ADAPTER_NAME"), "{message}");
    assert!(message.contains("apt-get install mesa-vulkan-drivers"), "{message}");
}
