using BnDist.Core.Tensors;

namespace BnDist.Core.Backends;

/// <summary>
/// The compute operations layers are built from. A backend allocates its tensors and runs
/// every op on them; layers never read elements. Per-channel coefficients and statistics
/// cross as small host spans (C values), which is all that must reach the host for the
/// synchronized batch norm of docs/architecture.md §1. Outputs are overwritten, never accumulated, and
/// every op accepts N = 0 (an empty shard).
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>"cpu", "ilgpu-cpu", "cuda:0", …</summary>
    string Name { get; }

    /// <summary>A zero-filled tensor.</summary>
    Tensor Allocate(params int[] shape);

    void Upload(ReadOnlySpan<float> source, Tensor destination);

    void Download(Tensor source, Span<float> destination);

    /// <summary>
    /// The elements of <paramref name="tensor"/> where they lie, when that is host memory (the CPU
    /// backend): a gradient transport then reads and writes them in place instead of through
    /// <see cref="Download"/> and <see cref="Upload"/>. False for a device's tensors.
    /// </summary>
    bool TryGetHostMemory(Tensor tensor, out Memory<float> memory);

    void Fill(Tensor tensor, float value);

    void Copy(Tensor source, Tensor destination);

    // ---- dense layers -------------------------------------------------------------------

    /// <summary>y = conv(x, w) + bias, NCHW / [Cout, Cin, KH, KW].</summary>
    void Conv2dForward(in ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y);

    /// <summary>dw, db (sums over the batch) and dx (skipped when null) from dy.</summary>
    void Conv2dBackward(in ConvGeometry g, Tensor x, Tensor w, Tensor dy, Tensor? dx, Tensor dw, Tensor? db);

    /// <summary>y[N, out] = x[N, in]·wᵀ + b, w in PyTorch's [out, in] layout.</summary>
    void LinearForward(int n, int inFeatures, int outFeatures, Tensor x, Tensor w, Tensor? b, Tensor y);

    /// <summary>dw = dyᵀ·x, db = Σₙ dy, dx = dy·w (skipped when null).</summary>
    void LinearBackward(int n, int inFeatures, int outFeatures, Tensor x, Tensor w, Tensor dy, Tensor? dx, Tensor dw, Tensor? db);

    // ---- elementwise and pooling ----------------------------------------------------------

    void ReluForward(Tensor x, Tensor y);

    /// <summary>dx = dy where y &gt; 0, else 0.</summary>
    void ReluBackward(Tensor y, Tensor dy, Tensor dx);

    void SigmoidForward(Tensor x, Tensor y);

    /// <summary>dx = dy·y·(1 − y).</summary>
    void SigmoidBackward(Tensor y, Tensor dy, Tensor dx);

    void MaxPool2dForward(in PoolGeometry g, Tensor x, Tensor y);

    /// <summary>Routes dy to the first maximum of each window (recomputed from x and y).</summary>
    void MaxPool2dBackward(in PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx);

    // ---- graph plumbing (residual sums, channel concatenation), pooling, dropout ------------

    /// <summary>y = a + b elementwise; y may be a or b (accumulation where a tensor fans out).</summary>
    void Add(Tensor a, Tensor b, Tensor y);

    /// <summary>y = max(a + b, 0) elementwise (a residual sum and the ReLU after it); y may be a or b.</summary>
    void AddRelu(Tensor a, Tensor b, Tensor y);

    /// <summary>
    /// dx = a + b where y &gt; 0, else 0: a sum of gradients passed back through the ReLU whose output is y (a residual
    /// block's input gradient, when its input is the previous block's ReLU output); dx may be a or b.
    /// </summary>
    void AddReluBackward(Tensor a, Tensor b, Tensor y, Tensor dx);

    /// <summary>y = a·b elementwise; y may be a or b (dropout's backward: dx = dy·mask).</summary>
    void Multiply(Tensor a, Tensor b, Tensor y);

    /// <summary>Copies a run of channels between two NCHW tensors (<see cref="ChannelSlice"/>).</summary>
    void CopyChannels(in ChannelSlice slice, Tensor source, Tensor destination);

    /// <summary>Average of each window, zero padding counted in the divisor Kernel².</summary>
    void AvgPool2dForward(in PoolGeometry g, Tensor x, Tensor y);

    /// <summary>dx = Σ over the windows containing each input of dy/Kernel² (overwrites dx).</summary>
    void AvgPool2dBackward(in PoolGeometry g, Tensor dy, Tensor dx);

    /// <summary>y[n, c] = mean over the S positions of x[n, c, ·] (AdaptiveAvgPool2d(1)).</summary>
    void GlobalAvgPoolForward(in ChannelLayout layout, Tensor x, Tensor y);

    /// <summary>dx[n, c, s] = dy[n, c] / S.</summary>
    void GlobalAvgPoolBackward(in ChannelLayout layout, Tensor dy, Tensor dx);

    /// <summary>
    /// Inverted dropout over [N, sampleSize]: element i of sample n is kept when
    /// <see cref="DropoutMask.Keep"/>(sampleKeys[n], i, p), which draws from a counter-based hash,
    /// so every backend draws the same mask; mask = 1/(1 − p) where kept, else 0; y = x·mask.
    /// </summary>
    void DropoutForward(int n, int sampleSize, ReadOnlySpan<ulong> sampleKeys, float p, Tensor x, Tensor mask, Tensor y);

    // ---- batch norm, in the stages of docs/architecture.md §1 ----------------------------

    /// <summary>
    /// Local statistics: sums[c] = Σ (x − k_c), sums[C + c] = Σ (x − k_c)² over the N·S
    /// values of channel c, accumulated in float64.
    /// </summary>
    void ChannelShiftedSums(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> shift, Span<double> sums);

    /// <summary>Elementwise normalize: y = the map of <paramref name="transform"/> (γ·x̂ + β, then the ReLU if fused).</summary>
    void BatchNormNormalize(in ChannelLayout layout, Tensor x, in BatchNormTransform transform, Tensor y);

    /// <summary>
    /// Backward reduce: sums[c] = Σ g, sums[C + c] = Σ g·x̂, in float64, with x̂ recomputed from x and g = dy
    /// (masked where the fused ReLU was off).
    /// </summary>
    void BatchNormBackwardSums(in ChannelLayout layout, Tensor dy, Tensor x, in BatchNormTransform transform, Span<double> sums);

    /// <summary>
    /// Backward elementwise: dx = γ_c·invStd_c·(g − meanDy_c − x̂·meanDyXhat_c), x̂ and g as in
    /// <see cref="BatchNormBackwardSums"/>, the means taken over the global batch (dβ/m and dγ/m of
    /// docs/architecture.md §1).
    /// </summary>
    void BatchNormBackwardInput(in ChannelLayout layout, Tensor dy, Tensor x, in BatchNormTransform transform,
        ReadOnlySpan<float> meanDy, ReadOnlySpan<float> meanDyXhat, Tensor dx);

    /// <summary>Inference: y = a_c·x + b_c, then max(y, 0) when <paramref name="relu"/>.</summary>
    void ChannelAffine(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift, bool relu, Tensor y);

    // ---- group norm (per sample: no cross-sample reduction) -------------------------------

    /// <summary>
    /// Per sample and group of C/G channels: x̂ = (x − μ)/sqrt(σ² + eps), y = γ_c·x̂ + β_c;
    /// invStd receives the N·G values 1/sqrt(σ² + eps).
    /// </summary>
    void GroupNormForward(in ChannelLayout layout, int groups, float eps, Tensor x, Tensor gamma, Tensor beta,
        Tensor xhat, Tensor invStd, Tensor y);

    /// <summary>dγ, dβ summed over the batch, and dx.</summary>
    void GroupNormBackward(in ChannelLayout layout, int groups, Tensor dy, Tensor xhat, Tensor gamma, Tensor invStd,
        Tensor dx, Tensor dgamma, Tensor dbeta);

    // ---- loss and optimizer ---------------------------------------------------------------

    /// <summary>
    /// Softmax cross-entropy of logits [N, K] against labels: returns Σₙ ℓₙ (float64) and the
    /// number of correct argmax predictions; dlogits = scale·(softmax − onehot).
    /// </summary>
    (double LossSum, int Correct) SoftmaxCrossEntropy(int n, int classes, Tensor logits, ReadOnlySpan<int> labels, float scale, Tensor? dlogits);

    /// <summary>torch.optim.SGD: g' = g + λ·w; v = μ·v + g'; w = w − lr·v (v unused when μ = 0).</summary>
    void SgdUpdate(Tensor w, Tensor grad, Tensor velocity, float lr, float momentum, float weightDecay);
}
