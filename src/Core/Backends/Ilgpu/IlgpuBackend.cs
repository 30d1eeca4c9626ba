using BnDist.Core.Backends.Ilgpu.Kernels;
using BnDist.Core.Tensors;
using ILGPU;
using ILGPU.Runtime;

namespace BnDist.Core.Backends.Ilgpu;

/// <summary>
/// The ILGPU backend: every op of <see cref="IBackend"/> as kernels on one accelerator (CUDA,
/// OpenCL, or ILGPU's CPU simulator for tests), with the CPU backend's semantics. Kernels
/// (Kernels/*.cs) are compiled once, in the constructor, and kept in fields.
/// </summary>
/// <remarks>
/// <para>Work is queued on the accelerator's default stream, in call order. The host waits only
/// where it needs a value: <see cref="Download"/>, the per-channel sums of the batch-norm stages
/// (2·C doubles) and the per-sample loss terms (3·N doubles). Uploads from host spans complete
/// before they return (ILGPU copies pageable memory synchronously); each op uploads its
/// per-channel coefficients in one packed copy. Dropout's sample keys are the exception: they
/// are queued without waiting where the accelerator allows it (IlgpuBackend.Graph.cs).</para>
/// <para>No device allocation in steady state: coefficient, sum, label, dropout-key and scratch buffers
/// (im2col columns, split-K partial products) are grown when too small and otherwise reused.</para>
/// <para>Determinism: no float atomics anywhere. Reductions run in a fixed order (see
/// <see cref="NormKernels"/>, <see cref="GemmKernels"/>), so results are bit-identical from run
/// to run on the same accelerator. Per-channel statistics are accumulated in float64.</para>
/// <para>The convolutions and linear layers are in IlgpuBackend.Dense.cs, activations and max pooling in
/// IlgpuBackend.Elementwise.cs, graph plumbing, average pooling and dropout in IlgpuBackend.Graph.cs,
/// batch and group norm in IlgpuBackend.Normalization.cs, the loss and SGD in IlgpuBackend.Training.cs.</para>
/// </remarks>
public sealed partial class IlgpuBackend : IBackend
{
    private readonly Context _context;
    private readonly int _reduceGroup, _gemmSide, _maxStridedGroups;

    // ---- kernels, loaded once ----------------------------------------------------------------
    private readonly Action<KernelConfig, int, ArrayView<float>, float> _fill;
    private readonly Action<KernelConfig, int, ArrayView<float>, ArrayView<float>> _relu, _sigmoid;
    private readonly Action<KernelConfig, int, ArrayView<float>, ArrayView<float>, ArrayView<float>> _reluBackward, _sigmoidBackward;
    private readonly Action<KernelConfig, int, PoolGeometry, ArrayView<float>, ArrayView<float>> _maxPool;
    private readonly Action<KernelConfig, int, PoolGeometry, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _maxPoolBackward;
    private readonly Action<KernelConfig, int, PoolGeometry, ArrayView<float>, ArrayView<float>> _avgPool, _avgPoolBackward;
    private readonly Action<KernelConfig, int, ArrayView<float>, ArrayView<float>, ArrayView<float>> _add, _addRelu, _multiply;
    private readonly Action<KernelConfig, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _addReluBackward;
    private readonly Action<KernelConfig, int, ChannelSlice, ArrayView<float>, ArrayView<float>> _copyChannels;
    private readonly Action<KernelConfig, int, int, ArrayView<float>, ArrayView<float>> _globalAvgPool, _globalAvgPoolBackward;
    private readonly Action<KernelConfig, int, int, float, float, ArrayView<ulong>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _dropout;
    private readonly Action<KernelConfig, GemmShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _gemm;
    private readonly Action<KernelConfig, int, int, int, int, ArrayView<float>, ArrayView<float>> _sumPartials;
    private readonly Action<KernelConfig, int, ConvGeometry, int, ArrayView<float>, ArrayView<float>> _im2col, _col2im;
    private readonly Action<KernelConfig, ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<double>> _shiftedSums;
    private readonly Action<KernelConfig, ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, ArrayView<double>> _bnBackwardSums;
    private readonly Action<KernelConfig, ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _sumsToFloat;
    private readonly Action<KernelConfig, int, ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _normalize;
    private readonly Action<KernelConfig, int, ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, ArrayView<float>> _bnBackwardInput;
    private readonly Action<KernelConfig, int, ChannelLayout, ArrayView<float>, ArrayView<float>, int, ArrayView<float>> _channelAffine;
    private readonly Action<KernelConfig, ChannelLayout, int, float, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _groupNormForward;
    private readonly Action<KernelConfig, ChannelLayout, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _groupNormBackward;
    private readonly Action<KernelConfig, int, int, float, int, ArrayView<float>, ArrayView<int>, ArrayView<double>, ArrayView<float>> _softmaxCrossEntropy;
    private readonly Action<KernelConfig, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float, float> _sgd;

    // ---- reused device buffers, grown when too small -----------------------------------------
    private MemoryBuffer1D<float, Stride1D.Dense>? _coeffs, _columns, _partials;
    private MemoryBuffer1D<double, Stride1D.Dense>? _sums;
    private MemoryBuffer1D<int, Stride1D.Dense>? _labels;
    private MemoryBuffer1D<ulong, Stride1D.Dense>? _dropoutKeys;
    private float[] _coeffHost = [];
    private double[] _sumsHost = [];

    /// <summary>Runs on <paramref name="device"/>; takes ownership of <paramref name="context"/>.</summary>
    internal IlgpuBackend(Context context, Device device, string name)
    {
        _context = context;
        Name = name;
        Accelerator = device.CreateAccelerator(context);
        try
        {
            // Group sizes: reductions take the largest power of two ≤ min(256, the accelerator's
            // limit); the GEMM the largest square of a power of two (16² on GPUs, 4² on the simulator).
            int limit = Math.Min(NormKernels.MaxGroup, Accelerator.MaxNumThreadsPerGroup);
            _reduceGroup = 1 << (31 - System.Numerics.BitOperations.LeadingZeroCount((uint)limit));
            _maxStridedGroups = 4 * Accelerator.NumMultiprocessors * Math.Max(1, Accelerator.MaxNumThreadsPerMultiprocessor / _reduceGroup);
            _gemmSide = 1;
            while (_gemmSide * 2 * _gemmSide * 2 <= limit && _gemmSide * 2 * 4 <= GemmKernels.MaxTile) _gemmSide *= 2;

            var a = Accelerator;
            _fill = a.LoadStreamKernel<int, ArrayView<float>, float>(ElementwiseKernels.Fill);
            _relu = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>>(ElementwiseKernels.Relu);
            _reluBackward = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>, ArrayView<float>>(ElementwiseKernels.ReluBackward);
            _sigmoid = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>>(ElementwiseKernels.Sigmoid);
            _sigmoidBackward = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>, ArrayView<float>>(ElementwiseKernels.SigmoidBackward);
            _maxPool = a.LoadStreamKernel<int, PoolGeometry, ArrayView<float>, ArrayView<float>>(PoolKernels.MaxForward);
            _maxPoolBackward = a.LoadStreamKernel<int, PoolGeometry, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(PoolKernels.MaxBackward);
            _avgPool = a.LoadStreamKernel<int, PoolGeometry, ArrayView<float>, ArrayView<float>>(PoolKernels.AvgForward);
            _avgPoolBackward = a.LoadStreamKernel<int, PoolGeometry, ArrayView<float>, ArrayView<float>>(PoolKernels.AvgBackward);
            _add = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GraphKernels.Add);
            _addRelu = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GraphKernels.AddRelu);
            _addReluBackward = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GraphKernels.AddReluBackward);
            _multiply = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GraphKernels.Multiply);
            _copyChannels = a.LoadStreamKernel<int, ChannelSlice, ArrayView<float>, ArrayView<float>>(GraphKernels.CopyChannels);
            _globalAvgPool = a.LoadStreamKernel<int, int, ArrayView<float>, ArrayView<float>>(GraphKernels.GlobalAvgForward);
            _globalAvgPoolBackward = a.LoadStreamKernel<int, int, ArrayView<float>, ArrayView<float>>(GraphKernels.GlobalAvgBackward);
            _dropout = a.LoadStreamKernel<int, int, float, float, ArrayView<ulong>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GraphKernels.Dropout);
            _gemm = a.LoadStreamKernel<GemmShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GemmKernels.Gemm);
            _sumPartials = a.LoadStreamKernel<int, int, int, int, ArrayView<float>, ArrayView<float>>(GemmKernels.SumPartials);
            _im2col = a.LoadStreamKernel<int, ConvGeometry, int, ArrayView<float>, ArrayView<float>>(ConvKernels.Im2Col);
            _col2im = a.LoadStreamKernel<int, ConvGeometry, int, ArrayView<float>, ArrayView<float>>(ConvKernels.Col2Im);
            _shiftedSums = a.LoadStreamKernel<ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<double>>(NormKernels.ChannelShiftedSums);
            _bnBackwardSums = a.LoadStreamKernel<ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, ArrayView<double>>(NormKernels.BackwardSums);
            _sumsToFloat = a.LoadStreamKernel<ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(NormKernels.ChannelSumsToFloat);
            _normalize = a.LoadStreamKernel<int, ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(NormKernels.Normalize);
            _bnBackwardInput = a.LoadStreamKernel<int, ChannelLayout, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, ArrayView<float>>(NormKernels.BackwardInput);
            _channelAffine = a.LoadStreamKernel<int, ChannelLayout, ArrayView<float>, ArrayView<float>, int, ArrayView<float>>(NormKernels.ChannelAffine);
            _groupNormForward = a.LoadStreamKernel<ChannelLayout, int, float, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(NormKernels.GroupNormForward);
            _groupNormBackward = a.LoadStreamKernel<ChannelLayout, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(NormKernels.GroupNormBackwardInput);
            _softmaxCrossEntropy = a.LoadStreamKernel<int, int, float, int, ArrayView<float>, ArrayView<int>, ArrayView<double>, ArrayView<float>>(LossKernels.SoftmaxCrossEntropy);
            _sgd = a.LoadStreamKernel<int, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float, float>(SgdKernels.Update);
        }
        catch
        {
            Accelerator.Dispose();
            throw;
        }
    }

    /// <summary>"ilgpu-cpu", "cuda:0 (NVIDIA H100 80GB HBM3)", "opencl:1 (…)".</summary>
    public string Name { get; }

    /// <summary>The accelerator every tensor and kernel of this backend lives on.</summary>
    public Accelerator Accelerator { get; }

    public Tensor Allocate(params int[] shape)
    {
        var t = new IlgpuTensor((int[])shape.Clone(), Accelerator);
        if (t.Length > 0) t.View.MemSetToZero();
        return t;
    }

    public void Upload(ReadOnlySpan<float> source, Tensor destination)
    {
        OpChecks.Length(source.Length, destination, nameof(source));
        if (source.Length > 0) V(destination).CopyFromCPU(source);
    }

    public void Download(Tensor source, Span<float> destination)
    {
        OpChecks.Length(destination.Length, source, nameof(destination));
        if (destination.Length > 0) V(source).CopyToCPU(destination);
    }

    public bool TryGetHostMemory(Tensor tensor, out Memory<float> memory)
    {
        memory = default;
        return false;
    }

    public void Fill(Tensor tensor, float value)
    {
        var v = V(tensor);
        if (v.Length > 0) _fill(Strided((int)v.Length), (int)v.Length, v, value);
    }

    public void Copy(Tensor source, Tensor destination)
    {
        OpChecks.Length(source.Length, destination, nameof(source));
        if (source.Length > 0) V(source).CopyTo(V(destination));
    }

    public void Dispose()
    {
        _coeffs?.Dispose();
        _columns?.Dispose();
        _partials?.Dispose();
        _sums?.Dispose();
        _labels?.Dispose();
        _dropoutKeys?.Dispose();
        Accelerator.Dispose();
        _context.Dispose();
        GC.SuppressFinalize(this);
    }

    // ---- helpers -------------------------------------------------------------------------------

    /// <summary>A tensor's elements; throws for a tensor of another backend.</summary>
    private ArrayView<float> V(Tensor t)
    {
        if (t is IlgpuTensor g && g.Accelerator == Accelerator) return g.View;
        throw new ArgumentException($"tensor {t} does not belong to the {Name} backend");
    }

    private ArrayView<float> VOrEmpty(Tensor? t) => t is null ? ArrayView<float>.Empty : V(t);

    /// <summary>Copies up to five per-channel coefficient spans into the device coefficient
    /// buffer, packed one after the other, in one upload; returns its view.</summary>
    private ArrayView<float> UploadCoefficients(ReadOnlySpan<float> a, ReadOnlySpan<float> b = default, ReadOnlySpan<float> c = default,
        ReadOnlySpan<float> d = default, ReadOnlySpan<float> e = default)
    {
        int length = a.Length + b.Length + c.Length + d.Length + e.Length;
        if (_coeffHost.Length < length) _coeffHost = new float[length];
        int at = 0;
        a.CopyTo(_coeffHost.AsSpan(at));
        b.CopyTo(_coeffHost.AsSpan(at += a.Length));
        c.CopyTo(_coeffHost.AsSpan(at += b.Length));
        d.CopyTo(_coeffHost.AsSpan(at += c.Length));
        e.CopyTo(_coeffHost.AsSpan(at + d.Length));
        var view = Grow(ref _coeffs, length).SubView(0, length);
        view.CopyFromCPU(_coeffHost.AsSpan(0, length));
        return view;
    }

    /// <summary>The first <paramref name="length"/> elements of a reused buffer, reallocated (never
    /// shrunk) when too small.</summary>
    private ArrayView<T> Grow<T>(ref MemoryBuffer1D<T, Stride1D.Dense>? buffer, long length) where T : unmanaged
    {
        if (buffer is null || buffer.Length < length)
        {
            buffer?.Dispose();
            buffer = Accelerator.Allocate1D<T>(Math.Max(length, 1));
        }
        return buffer.View.SubView(0, length);
    }

    /// <summary>
    /// A grid-stride launch over <paramref name="n"/> elements: groups of <see cref="_reduceGroup"/>
    /// threads, one per group-size elements but at most enough to fill the accelerator four times
    /// over (on the simulator: 4 groups, each thread looping over many elements).
    /// </summary>
    private KernelConfig Strided(long n)
    {
        long groups = Math.Clamp((n + _reduceGroup - 1) / _reduceGroup, 1, _maxStridedGroups);
        return new KernelConfig((int)groups, _reduceGroup);
    }

    /// <summary>A launch of one group of <see cref="_reduceGroup"/> threads per item.</summary>
    private KernelConfig ReduceConfig(int groups) => new(groups, _reduceGroup);


}
