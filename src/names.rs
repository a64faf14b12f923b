//! Dtypes, devices and shapes written as a user reads them, for every error and problem
//! message: `float32`, `bfloat16`, `int64` (PyTorch's names, as `torch.float32` prints
//! without its prefix), `cpu`, `cuda:0`, `[2, 1]`. Never Rust's `Debug` of tch's types
//! (`Float`, `Some(Float)`, `Cpu`, `Cuda(0)`).
use tch::{Device, Kind};

/// PyTorch's name of a dtype: `float32`, `bfloat16`, `int64`, `bool`...
pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Uint8 => "uint8",
        Kind::Int8 => "int8",
        Kind::Int16 => "int16",
        Kind::Int => "int32",
        Kind::Int64 => "int64",
        Kind::Half => "float16",
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::ComplexHalf => "complex32",
        Kind::ComplexFloat => "complex64",
        Kind::ComplexDouble => "complex128",
        Kind::Bool => "bool",
        Kind::QInt8 => "qint8",
        Kind::QUInt8 => "quint8",
        Kind::QInt32 => "qint32",
        Kind::BFloat16 => "bfloat16",
        Kind::Float8e5m2 => "float8_e5m2",
        Kind::Float8e4m3fn => "float8_e4m3fn",
        Kind::Float8e5m2fnuz => "float8_e5m2fnuz",
        Kind::Float8e4m3fnuz => "float8_e4m3fnuz",
    }
}

/// PyTorch's name of a device: `cpu`, `cuda:0`, `mps`, `vulkan`.
pub(crate) fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(index) => format!("cuda:{index}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// A shape as a list: `[2, 1]`, `[]` for a scalar.
pub(crate) fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// Names in backticks, comma-separated: `` `a`, `b` ``; `(none)` for an empty list.
pub(crate) fn quoted_list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every problem of a list in one line, `; `-separated, as the errors that collect them print.
pub(crate) fn problem_list<T: std::fmt::Display>(problems: &[T]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `kind` is a floating-point dtype (the ones a tensor that requires grad, or a
/// module's `to(dtype)`, may take besides the complex ones).
pub(crate) fn is_floating(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Half
            | Kind::Float
            | Kind::Double
            | Kind::BFloat16
            | Kind::Float8e5m2
            | Kind::Float8e4m3fn
            | Kind::Float8e5m2fnuz
            | Kind::Float8e4m3fnuz
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pytorchs() {
        assert_eq!(kind_name(Kind::Float), "float32");
        assert_eq!(kind_name(Kind::BFloat16), "bfloat16");
        assert_eq!(kind_name(Kind::Int64), "int64");
        assert_eq!(kind_name(Kind::Int), "int32");
        assert_eq!(device_name(Device::Cpu), "cpu");
        assert_eq!(device_name(Device::Cuda(1)), "cuda:1");
        assert_eq!(shape_text(&[2, 1]), "[2, 1]");
        assert_eq!(shape_text(&[]), "[]");
        assert!(is_floating(Kind::Half) && !is_floating(Kind::Int64));
    }
}
