//! [`Hyperparameters`] of tch's layers. Sizes come from the weights' shapes; what tch keeps
//! in a private config (a convolution's stride, padding, dilation and groups, a norm's
//! `eps`) is read from the layer's `Debug` text, which prints that config, and a test
//! pins each field so that a tch whose text differs fails the test instead of reporting
//! a wrong value. A field that cannot be read is left out, never guessed.
use crate::tree::{HyperList, HyperValue, Hyperparameters};
use tch::nn;

/// The text after `field: ` in a `Debug` text, up to the next `,` or `}` at its nesting
/// level (brackets count).
fn debug_field<'t>(text: &'t str, field: &str) -> Option<&'t str> {
    let start = text.find(&format!(" {field}: "))? + field.len() + 3;
    let rest = &text[start..];
    let mut depth = 0i32;
    for (at, c) in rest.char_indices() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' if depth > 0 => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..at].trim()),
            _ => {}
        }
    }
    None
}

fn debug_int(text: &str, field: &str) -> Option<HyperValue> {
    debug_field(text, field)?
        .parse::<i64>()
        .ok()
        .map(HyperValue::Int)
}

fn debug_float(text: &str, field: &str) -> Option<HyperValue> {
    debug_field(text, field)?
        .parse::<f64>()
        .ok()
        .map(HyperValue::Float)
}

fn debug_ints(text: &str, field: &str) -> Option<HyperValue> {
    let inner = debug_field(text, field)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    let values: Option<Vec<i64>> = inner.split(',').map(|v| v.trim().parse().ok()).collect();
    values.map(HyperValue::Ints)
}

/// Pushes `(name, value)` when the value could be read.
fn push(list: &mut HyperList, name: &'static str, value: Option<HyperValue>) {
    if let Some(value) = value {
        list.push((name, value));
    }
}

impl Hyperparameters for nn::Linear {
    fn hyperparameters(&self) -> HyperList {
        let size = self.ws.size();
        vec![
            ("in_features", HyperValue::Int(size[1])),
            ("out_features", HyperValue::Int(size[0])),
            ("bias", HyperValue::Bool(self.bs.is_some())),
        ]
    }
}

impl Hyperparameters for nn::Embedding {
    /// PyTorch's repr: `padding_idx` only when one is set, the two flags only when on.
    fn hyperparameters(&self) -> HyperList {
        let text = format!("{self:?}");
        let size = self.ws.size();
        let mut list = vec![
            ("num_embeddings", HyperValue::Int(size[0])),
            ("embedding_dim", HyperValue::Int(size[1])),
        ];
        if let Some(HyperValue::Int(index)) = debug_int(&text, "padding_idx") {
            if index >= 0 {
                list.push(("padding_idx", HyperValue::Int(index)));
            }
        }
        for flag in ["sparse", "scale_grad_by_freq"] {
            if debug_field(&text, flag) == Some("true") {
                list.push((flag, HyperValue::Bool(true)));
            }
        }
        list
    }
}

impl<ND: std::fmt::Debug> Hyperparameters for nn::Conv<ND> {
    fn hyperparameters(&self) -> HyperList {
        let text = format!("{self:?}");
        let size = self.ws.size();
        let groups = debug_int(&text, "groups");
        let per_group = size[1];
        let mut list = Vec::new();
        if let Some(HyperValue::Int(groups)) = groups {
            list.push(("in_channels", HyperValue::Int(per_group * groups)));
        }
        list.push(("out_channels", HyperValue::Int(size[0])));
        list.push(("kernel_size", HyperValue::Ints(size[2..].to_vec())));
        push(&mut list, "stride", debug_ints(&text, "stride"));
        push(&mut list, "padding", debug_ints(&text, "padding"));
        push(&mut list, "dilation", debug_ints(&text, "dilation"));
        push(&mut list, "groups", groups);
        list.push(("bias", HyperValue::Bool(self.bs.is_some())));
        push(&mut list, "padding_mode", debug_padding_mode(&text));
        list
    }
}

/// A convolution's padding mode by PyTorch's name (`zeros`, `reflect`...).
fn debug_padding_mode(text: &str) -> Option<HyperValue> {
    let name = match debug_field(text, "padding_mode")? {
        "Zeros" => "zeros",
        "Reflect" => "reflect",
        "Replicate" => "replicate",
        "Circular" => "circular",
        _ => return None,
    };
    Some(HyperValue::Text(name.to_owned()))
}

impl<ND: std::fmt::Debug> Hyperparameters for nn::ConvTransposeND<ND> {
    fn hyperparameters(&self) -> HyperList {
        let text = format!("{self:?}");
        let size = self.ws.size();
        let groups = debug_int(&text, "groups");
        let mut list = vec![("in_channels", HyperValue::Int(size[0]))];
        if let Some(HyperValue::Int(groups)) = groups {
            list.push(("out_channels", HyperValue::Int(size[1] * groups)));
        }
        list.push(("kernel_size", HyperValue::Ints(size[2..].to_vec())));
        push(&mut list, "stride", debug_ints(&text, "stride"));
        push(&mut list, "padding", debug_ints(&text, "padding"));
        push(
            &mut list,
            "output_padding",
            debug_ints(&text, "output_padding"),
        );
        push(&mut list, "groups", groups);
        list.push(("bias", HyperValue::Bool(self.bs.is_some())));
        push(&mut list, "dilation", debug_ints(&text, "dilation"));
        list
    }
}

impl Hyperparameters for nn::LayerNorm {
    fn hyperparameters(&self) -> HyperList {
        let text = format!("{self:?}");
        let mut list = vec![(
            "normalized_shape",
            HyperValue::Ints(self.normalized_shape.clone()),
        )];
        push(&mut list, "eps", debug_float(&text, "eps"));
        list.push(("elementwise_affine", HyperValue::Bool(self.ws.is_some())));
        list
    }
}

impl Hyperparameters for nn::GroupNorm {
    fn hyperparameters(&self) -> HyperList {
        let text = format!("{self:?}");
        let mut list = vec![
            ("num_groups", HyperValue::Int(self.num_groups)),
            ("num_channels", HyperValue::Int(self.num_channels)),
        ];
        push(&mut list, "eps", debug_float(&text, "eps"));
        list.push(("affine", HyperValue::Bool(self.ws.is_some())));
        list
    }
}

impl Hyperparameters for nn::BatchNorm {
    fn hyperparameters(&self) -> HyperList {
        let text = format!("{self:?}");
        let mut list = vec![("num_features", HyperValue::Int(self.running_mean.size()[0]))];
        push(&mut list, "eps", debug_float(&text, "eps"));
        push(&mut list, "momentum", debug_float(&text, "momentum"));
        list.push(("affine", HyperValue::Bool(self.ws.is_some())));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn names(list: &HyperList) -> Vec<String> {
        list.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn a_conv_reports_its_private_config_read_from_tchs_debug_text() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = nn::ConvConfig {
            stride: 2,
            padding: 1,
            dilation: 3,
            groups: 2,
            bias: false,
            ..Default::default()
        };
        let conv = nn::conv2d(vs.root(), 4, 6, 3, config);
        assert_eq!(
            names(&conv.hyperparameters()),
            [
                "in_channels=4",
                "out_channels=6",
                "kernel_size=[3, 3]",
                "stride=[2, 2]",
                "padding=[1, 1]",
                "dilation=[3, 3]",
                "groups=2",
                "bias=false",
                "padding_mode=\"zeros\""
            ]
        );
        let reflect = nn::conv1d(
            vs.root() / "r",
            2,
            2,
            3,
            nn::ConvConfig {
                padding_mode: nn::PaddingMode::Reflect,
                ..Default::default()
            },
        );
        let mode = reflect.hyperparameters().pop();
        assert_eq!(
            mode,
            Some(("padding_mode", HyperValue::Text("reflect".into())))
        );
    }

    #[test]
    fn an_embedding_reports_its_padding_index_and_flags_when_set() {
        let vs = nn::VarStore::new(Device::Cpu);
        let plain = nn::embedding(vs.root() / "a", 10, 4, Default::default());
        assert_eq!(
            names(&plain.hyperparameters()),
            ["num_embeddings=10", "embedding_dim=4"]
        );
        let config = nn::EmbeddingConfig {
            padding_idx: 0,
            sparse: true,
            scale_grad_by_freq: true,
            ..Default::default()
        };
        let padded = nn::embedding(vs.root() / "b", 10, 4, config);
        assert_eq!(
            names(&padded.hyperparameters()),
            [
                "num_embeddings=10",
                "embedding_dim=4",
                "padding_idx=0",
                "sparse=true",
                "scale_grad_by_freq=true"
            ]
        );
    }

    #[test]
    fn norms_report_eps_and_affine() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = nn::LayerNormConfig {
            eps: 1e-6,
            ..Default::default()
        };
        let norm = nn::layer_norm(vs.root() / "ln", vec![8], config);
        assert_eq!(
            names(&norm.hyperparameters()),
            [
                "normalized_shape=[8]",
                "eps=1e-6",
                "elementwise_affine=true"
            ]
        );
        let bn = nn::batch_norm1d(vs.root() / "bn", 5, Default::default());
        assert_eq!(
            names(&bn.hyperparameters()),
            ["num_features=5", "eps=1e-5", "momentum=0.1", "affine=true"]
        );
        let gn = nn::group_norm(vs.root() / "gn", 2, 6, Default::default());
        assert_eq!(
            names(&gn.hyperparameters()),
            ["num_groups=2", "num_channels=6", "eps=1e-5", "affine=true"]
        );
    }
}
