//! The member network: a small 3-D CNN from the two-channel lesion crop to two logits
//! (`[gbm, pcnsl]`), sized to train on two CPU cores in minutes.
//!
//! Four blocks of conv3d (3³) → group norm → ReLU, the first three followed by 2³ max-pooling,
//! then global average pooling, dropout and a linear layer. Group norm rather than batch norm:
//! it behaves the same in training and inference, so the traced module has no running
//! statistics to get wrong and small batches train stably.

use tch::{Tensor, nn, nn::ModuleT};

/// Channels of the four convolutional blocks.
pub const WIDTHS: [i64; 4] = [8, 16, 32, 64];
const DROPOUT: f64 = 0.3;

/// Builds the network's layers under `vs`. Input `[B, 2, D, H, W]` float32 (D, H, W divisible
/// by 8), output logits `[B, 2]`.
pub fn classifier(vs: &nn::Path) -> nn::SequentialT {
    let conv = nn::ConvConfig { padding: 1, ..Default::default() };
    let mut seq = nn::seq_t();
    let mut in_ch = 2;
    for (n, &out_ch) in WIDTHS.iter().enumerate() {
        seq = seq
            .add(nn::conv3d(vs / format!("conv{n}"), in_ch, out_ch, 3, conv))
            .add(nn::group_norm(vs / format!("norm{n}"), (out_ch / 4).max(1), out_ch, Default::default()))
            .add_fn(|x| x.relu());
        if n + 1 < WIDTHS.len() {
            seq = seq.add_fn(|x| x.max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false));
        }
        in_ch = out_ch;
    }
    seq.add_fn(|x| x.adaptive_avg_pool3d([1, 1, 1]).flatten(1, -1))
        .add_fn_t(|x, train| x.dropout(DROPOUT, train))
        .add(nn::linear(vs / "head", in_ch, 2, Default::default()))
}

/// Runs `net` in inference mode (no dropout) on `xs`.
pub fn logits(net: &nn::SequentialT, xs: &Tensor) -> Tensor {
    net.forward_t(xs, false)
}
