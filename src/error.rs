//! The crate's one error type. Every public function checks its input on the host
//! and returns one of these before anything is recorded on the GPU.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with the numbers needed to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched the requested backends.
    #[error("no GPU adapter found for backends [{backends}]: {hint}")]
    NoAdapter {
        /// The backends searched.
        backends: String,
        /// What to install or set.
        hint: String,
    },

    /// The adapter was found but refused to open a device.
    #[error("adapter {adapter} refused to open a device: {reason}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// The driver's reason.
        reason: String,
    },

    /// A backend name (from the API or the WGPU_BACKEND variable) is not one we know.
    #[error("unknown backend {name:?}: expected a comma list of vulkan, metal, dx12, gl, webgpu")]
    UnknownBackend {
        /// The name given.
        name: String,
    },

    /// An operand's shape does not fit the operation.
    #[error("{op}: {what} has shape {got:?}, expected {expected}")]
    ShapeMismatch {
        /// The op the caller called.
        op: &'static str,
        /// The argument or operand at fault.
        what: &'static str,
        /// What it should be.
        expected: String,
        /// What it is.
        got: Vec<usize>,
    },

    /// A scalar or configuration argument out of its range (a learning rate that
    /// is NaN, a drop probability of 1, equal begin and end ids, ...).
    #[error("{op}: {what} is {got}, expected {expected}")]
    InvalidArgument {
        /// The op the caller called.
        op: &'static str,
        /// The argument or operand at fault.
        what: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        got: String,
    },

    /// Host data does not have as many elements as the shape says.
    #[error("data of {got} elements given for shape {shape:?} ({expected} elements)")]
    DataLength {
        /// The shape asked for.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements given.
        got: usize,
    },

    /// A tensor of size zero where the operation needs at least one element.
    #[error("{op}: {what} is empty (shape {shape:?})")]
    Empty {
        /// The op the caller called.
        op: &'static str,
        /// The argument or operand at fault.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// An operand has the wrong element type.
    #[error("{op}: {what} is {got:?}, expected {expected:?}")]
    DType {
        /// The op the caller called.
        op: &'static str,
        /// The argument or operand at fault.
        what: &'static str,
        /// The element type the op takes.
        expected: crate::DType,
        /// The element type given.
        got: crate::DType,
    },

    /// A strided view reaches past the end of its tensor.
    #[error("{op}: view of {what} reaches element {last} of a tensor of {len}")]
    ViewOutOfBounds {
        /// The op the caller called.
        op: &'static str,
        /// The argument or operand at fault.
        what: &'static str,
        /// The last element it reaches.
        last: usize,
        /// The tensor's elements.
        len: usize,
    },

    /// An index (token id, class) past its bound.
    #[error("{op}: {what} at position {index} is {value}, not below {bound}")]
    IndexOutOfRange {
        /// The op the caller called.
        op: &'static str,
        /// The argument or operand at fault.
        what: &'static str,
        /// Its position.
        index: usize,
        /// Its value.
        value: usize,
        /// The bound it must stay below.
        bound: usize,
    },

    /// A training step's loss or gradient norm is NaN or infinite; the optimizer
    /// left the weights as they were.
    #[error(
        "step {step}: non-finite loss {loss} or gradient norm {grad_norm}; weights not updated"
    )]
    NonFinite {
        /// The optimizer's step.
        step: u32,
        /// The loss of the step.
        loss: f32,
        /// The global gradient norm.
        grad_norm: f32,
    },

    /// A checkpoint or data file that cannot be used as it is.
    #[error("{path}: {reason}")]
    File {
        /// The file (or the name given for the text).
        path: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A malformed line of a data file (line 0: the file as a whole).
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file (or the name given for the text).
        path: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A sequence length outside 1..=max (the padded length T).
    #[error("{op}: length of sequence {index} is {value}, outside 1..={max}")]
    LengthOutOfRange {
        /// The op the caller called.
        op: &'static str,
        /// The sequence.
        index: usize,
        /// Its length.
        value: usize,
        /// The padded length.
        max: usize,
    },

    /// A size exceeds a limit of the device (or of 32-bit indexing in the shaders).
    #[error("{op}: {what} = {value} exceeds the limit {limit}")]
    LimitExceeded {
        /// The op the caller called.
        op: &'static str,
        /// The argument or operand at fault.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },

    /// The adapter lacks an optional feature that the request needs.
    #[error("the adapter {adapter} lacks feature {feature}")]
    FeatureMissing {
        /// The adapter's name.
        adapter: String,
        /// The wgpu feature.
        feature: &'static str,
    },

    /// An output shares its buffer with an input of the same dispatch.
    #[error("{op}: {what} shares its buffer with an input")]
    Aliasing {
        /// The op the caller called.
        op: &'static str,
        /// The argument or operand at fault.
        what: &'static str,
    },

    /// Operands were created on different contexts (devices).
    #[error("{op}: operands belong to different devices")]
    DeviceMismatch {
        /// The op the caller called.
        op: &'static str,
    },

    /// Mapping a buffer for readback failed.
    #[error("reading back {label}: {reason}")]
    Readback {
        /// The readback.
        label: String,
        /// Why mapping failed.
        reason: String,
    },

    /// The device reported an error for work already handed to it (a validation
    /// error in commands recorded through [`Recorder::encoder_mut`](crate::Recorder::encoder_mut),
    /// out of memory, an internal error); returned by the next wait or readback.
    #[error("the device reported {kind}: {message}")]
    Device {
        /// Validation, out of memory or internal.
        kind: &'static str,
        /// The device's message.
        message: String,
    },

    /// A kernel's WGSL does not compile (naga's parser or validator), or
    /// declares what the library cannot bind; `line` and `column` count from 1
    /// (0 where the error has no place), `text` is that line.
    #[error("kernel {kernel}: WGSL error at line {line}, column {column}: {message}\n  | {text}")]
    Shader {
        /// The kernel's name.
        kernel: String,
        /// The line, from 1.
        line: u32,
        /// The column, from 1.
        column: u32,
        /// The compiler's message.
        message: String,
        /// The text of that line.
        text: String,
    },

    /// A launch of a user's kernel that does not fit its shader.
    #[error("kernel {kernel}: {problem}")]
    Kernel {
        /// The kernel's name.
        kernel: String,
        /// What does not fit.
        problem: KernelProblem,
    },

    /// A custom op's backward gave gradients that do not fit its inputs.
    #[error("custom op {op}: {problem}")]
    CustomOp {
        /// The custom op's name.
        op: String,
        /// What does not fit.
        problem: String,
    },

    /// The device was lost (driver reset, GPU removed); open a new [`Context`](crate::Context)
    /// and resume from a checkpoint.
    #[error("the device was lost: {reason}")]
    DeviceLost {
        /// The driver's reason.
        reason: String,
    },
}

impl Error {
    /// The same error reported by `op`, the op the caller called, where it came
    /// from a building block of it (a tape's gather checks its ids as the
    /// embedding does).
    pub(crate) fn in_op(mut self, caller: &'static str) -> Self {
        match &mut self {
            Error::ShapeMismatch { op, .. }
            | Error::InvalidArgument { op, .. }
            | Error::Empty { op, .. }
            | Error::DType { op, .. }
            | Error::ViewOutOfBounds { op, .. }
            | Error::IndexOutOfRange { op, .. }
            | Error::LengthOutOfRange { op, .. }
            | Error::LimitExceeded { op, .. }
            | Error::Aliasing { op, .. }
            | Error::DeviceMismatch { op } => *op = caller,
            _ => {}
        }
        self
    }
}

/// What is wrong with a launch of a user's kernel ([`Error::Kernel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelProblem {
    /// The shader has no compute entry point of this name.
    UnknownEntry {
        /// The entry point asked for.
        entry: String,
        /// The shader's compute entry points.
        known: Vec<String>,
    },
    /// A tensor bound to a name no binding of the shader has.
    UndeclaredBinding {
        /// The name bound.
        name: String,
        /// What the shader declares.
        declared: Vec<String>,
    },
    /// The entry point uses a binding that the launch gave no tensor.
    UnboundBinding {
        /// The entry point.
        entry: String,
        /// The binding.
        name: String,
    },
    /// The same name bound twice.
    BoundTwice {
        /// The binding.
        name: String,
    },
    /// Two bindings share one buffer and the shader writes at least one of
    /// them (a data race, and a usage conflict WebGPU refuses).
    Aliasing {
        /// The binding the shader writes.
        writable: String,
        /// The binding sharing its buffer.
        other: String,
    },
    /// The parameters' bytes differ from the size of the shader's uniform
    /// struct at binding 0 (0: the shader declares none, or none was given).
    ParamsSize {
        /// The bytes of the shader's uniform struct.
        expected: u32,
        /// The bytes given.
        got: usize,
    },
    /// A tensor whose element type the binding's array does not hold.
    ElementType {
        /// The binding.
        name: String,
        /// The array's element type in the shader.
        declared: String,
        /// The tensor's element type.
        got: crate::DType,
    },
    /// No workgroup count given for the launch.
    NoGroups,
    /// A tensor of no elements (a binding cannot be empty).
    EmptyTensor {
        /// The name given.
        name: String,
    },
}

impl std::fmt::Display for KernelProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownEntry { entry, known } => {
                write!(
                    f,
                    "no compute entry point {entry:?} (the shader has {known:?})"
                )
            }
            Self::UndeclaredBinding { name, declared } => write!(
                f,
                "binding {name:?} is not declared by the shader (its bindings: {declared:?})"
            ),
            Self::UnboundBinding { entry, name } => {
                write!(
                    f,
                    "entry point {entry} uses binding {name:?}, which was not bound"
                )
            }
            Self::BoundTwice { name } => write!(f, "binding {name:?} is bound twice"),
            Self::Aliasing { writable, other } => write!(
                f,
                "{writable:?} (written by the shader) and {other:?} share one buffer"
            ),
            Self::ParamsSize { expected, got } => write!(
                f,
                "parameters of {got} bytes given, the shader's uniform struct at binding 0 \
                 has {expected} (0: none)"
            ),
            Self::ElementType {
                name,
                declared,
                got,
            } => write!(
                f,
                "binding {name:?} holds {declared} but the tensor is {got:?}"
            ),
            Self::NoGroups => write!(f, "no workgroup count: call groups or cover"),
            Self::EmptyTensor { name } => write!(f, "the tensor bound to {name:?} is empty"),
        }
    }
}
