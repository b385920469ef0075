//! The member network: a small 3-D CNN from the two-channel lesion crop to two logits
//! (`[gbm, pcnsl]`), sized to train on two CPU cores in minutes.
//!
//! Four blocks of conv3d (3³) → group norm → ReLU, the first three followed by 2³ max-pooling,
//! then global average pooling, dropout and a linear layer. Group norm rather than batch norm:
//! it behaves the same in training and inference, so the traced module has no running
//! statistics to get wrong and small batches train stably.

use tch::{Tensor, nn, nn::ModuleT};

/// The shape of one member's network.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Architecture {
    /// Channels of the four convolutional blocks.
    pub widths: [i64; 4],
    /// Dropout before the linear layer (training only).
    pub dropout: f64,
}

/// The network every member has unless the ensemble is trained with varied architectures.
pub const DEFAULT: Architecture = Architecture { widths: [8, 16, 32, 64], dropout: 0.3 };

/// Member shapes for an ensemble of varied architectures, taken in turn: narrower and wider
/// networks with less and more dropout, so that the members err differently.
pub const VARIED: [Architecture; 5] = [
    DEFAULT,
    Architecture { widths: [12, 24, 48, 96], dropout: 0.4 },
    Architecture { widths: [6, 12, 24, 48], dropout: 0.2 },
    Architecture { widths: [8, 16, 32, 64], dropout: 0.5 },
    Architecture { widths: [16, 24, 32, 48], dropout: 0.3 },
];

/// Builds the network's layers under `vs`. Input `[B, 2, D, H, W]` float32 (D, H, W divisible
/// by 8), output logits `[B, 2]`.
pub fn classifier(vs: &nn::Path, arch: &Architecture) -> nn::SequentialT {
    let conv = nn::ConvConfig { padding: 1, ..Default::default() };
    let mut seq = nn::seq_t();
    let mut in_ch = 2;
    let dropout = arch.dropout;
    for (n, &out_ch) in arch.widths.iter().enumerate() {
        seq = seq
            .add(nn::conv3d(vs / format!("conv{n}"), in_ch, out_ch, 3, conv))
            .add(nn::group_norm(vs / format!("norm{n}"), (out_ch / 4).max(1), out_ch, Default::default()))
            .add_fn(|x| x.relu());
        if n + 1 < arch.widths.len() {
            seq = seq.add_fn(|x| x.max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false));
        }
        in_ch = out_ch;
    }
    seq.add_fn(|x| x.adaptive_avg_pool3d([1, 1, 1]).flatten(1, -1))
        .add_fn_t(move |x, train| x.dropout(dropout, train))
        .add(nn::linear(vs / "head", in_ch, 2, Default::default()))
}

/// Runs `net` in inference mode (no dropout) on `xs`.
pub fn logits(net: &nn::SequentialT, xs: &Tensor) -> Tensor {
    net.forward_t(xs, false)
}
