use std::fmt;

/// Everything the engine can fail at, each with a message that names the cause and what to do.
#[derive(Debug)]
pub enum Error {
    /// No usable GPU adapter (or none matching `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`).
    NoAdapter(String),
    /// The adapter refused to open a device.
    Device(String),
    /// A shader, pipeline or dispatch failed validation; names the kernel.
    Kernel {
        /// The entry point, the `.wgsl` file, or `dispatch` for an error found after a submission.
        kernel: String,
        /// What failed (the validator's message, or why the launch was refused).
        message: String,
    },
    /// Shapes that do not fit together.
    Shape(String),
    /// A buffer larger than this device can bind (or than the shaders' u32 indices reach).
    DeviceLimit(String),
    /// Reading a buffer back from the GPU failed.
    Readback(String),
    /// A graph that cannot be built or run as asked.
    Graph(String),
    /// An optimizer, schedule or layer setting outside what it accepts; names the setting.
    Setting(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            Error::Device(m) => write!(f, "could not open the GPU device: {m}"),
            Error::Kernel { kernel, message } => write!(f, "kernel `{kernel}` failed: {message}"),
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::DeviceLimit(m) => write!(f, "{m}"),
            Error::Readback(m) => write!(f, "reading back from the GPU failed: {m}"),
            Error::Graph(m) => write!(f, "graph error: {m}"),
            Error::Setting(m) => write!(f, "invalid setting: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;
