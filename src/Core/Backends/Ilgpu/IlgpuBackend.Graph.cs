using BnDist.Core.Tensors;
using ILGPU;
using ILGPU.Runtime;

namespace BnDist.Core.Backends.Ilgpu;

/// <summary>
/// Graph plumbing (sums, products, channel copies), average pooling and dropout (kernels:
/// Kernels/GraphKernels.cs, PoolKernels.cs). None of them waits for the device on CUDA or the
/// simulator: dropout's N sample keys (8·N bytes) go to a reused device buffer (grown, never
/// shrunk) by a copy queued behind the work before it, like a kernel (see <see cref="UploadAsync"/>).
/// </summary>
public sealed partial class IlgpuBackend
{
    public void Add(Tensor a, Tensor b, Tensor y)
    {
        OpChecks.Length(a.Length, b, nameof(b));
        OpChecks.Length(a.Length, y, nameof(y));
        if (a.Length > 0) _add(Strided(a.Length), a.Length, V(a), V(b), V(y));
    }

    public void AddRelu(Tensor a, Tensor b, Tensor y)
    {
        OpChecks.Length(a.Length, b, nameof(b));
        OpChecks.Length(a.Length, y, nameof(y));
        if (a.Length > 0) _addRelu(Strided(a.Length), a.Length, V(a), V(b), V(y));
    }

    public void AddReluBackward(Tensor a, Tensor b, Tensor y, Tensor dx)
    {
        OpChecks.Length(a.Length, b, nameof(b));
        OpChecks.Length(a.Length, y, nameof(y));
        OpChecks.Length(a.Length, dx, nameof(dx));
        if (a.Length > 0) _addReluBackward(Strided(a.Length), a.Length, V(a), V(b), V(y), V(dx));
    }

    public void Multiply(Tensor a, Tensor b, Tensor y)
    {
        OpChecks.Length(a.Length, b, nameof(b));
        OpChecks.Length(a.Length, y, nameof(y));
        if (a.Length > 0) _multiply(Strided(a.Length), a.Length, V(a), V(b), V(y));
    }

    public void CopyChannels(in ChannelSlice slice, Tensor source, Tensor destination)
    {
        OpChecks.Slice(slice, source, destination);
        int n = slice.N * slice.Count * slice.Spatial;
        if (n > 0) _copyChannels(Strided(n), n, slice, V(source), V(destination));
    }

    public void AvgPool2dForward(in PoolGeometry g, Tensor x, Tensor y)
    {
        OpChecks.Pool(g, x, y);
        int outputs = g.N * g.Channels * g.OutHeight * g.OutWidth;
        if (outputs > 0) _avgPool(Strided(outputs), outputs, g, V(x), V(y));
    }

    public void AvgPool2dBackward(in PoolGeometry g, Tensor dy, Tensor dx)
    {
        OpChecks.Pool(g, dx, dy);
        if (dx.Length > 0) _avgPoolBackward(Strided(dx.Length), dx.Length, g, V(dy), V(dx));
    }

    public void GlobalAvgPoolForward(in ChannelLayout layout, Tensor x, Tensor y)
    {
        OpChecks.Layout(layout, x);
        int rows = layout.N * layout.Channels;
        OpChecks.Length(rows, y, nameof(y));
        if (rows > 0) _globalAvgPool(Strided(rows), rows, layout.Spatial, V(x), V(y));
    }

    public void GlobalAvgPoolBackward(in ChannelLayout layout, Tensor dy, Tensor dx)
    {
        OpChecks.Layout(layout, dx);
        OpChecks.Length(layout.N * layout.Channels, dy, nameof(dy));
        if (dx.Length > 0) _globalAvgPoolBackward(Strided(dx.Length), dx.Length, layout.Spatial, V(dy), V(dx));
    }

    public void DropoutForward(int n, int sampleSize, ReadOnlySpan<ulong> sampleKeys, float p, Tensor x, Tensor mask, Tensor y)
    {
        OpChecks.Dropout(n, sampleSize, sampleKeys.Length, p, x, mask, y);
        if (x.Length == 0) return;
        var keys = Grow(ref _dropoutKeys, n);
        UploadAsync(sampleKeys, keys);
        _dropout(Strided(x.Length), x.Length, sampleSize, p, 1f / (1f - p), keys, V(x), V(mask), V(y));
    }

    /// <summary>
    /// Copies <paramref name="source"/> to <paramref name="target"/> on the default stream without
    /// waiting for the work queued before it (ordered after it, like a kernel). Safe where the copy
    /// has taken the host memory when it returns: CUDA stages pageable memory before returning,
    /// the CPU simulator copies at once. OpenCL's non-blocking write would read the span later, so
    /// there the copy waits (as every upload of the other ops does).
    /// </summary>
    private unsafe void UploadAsync<T>(ReadOnlySpan<T> source, ArrayView<T> target) where T : unmanaged
    {
        if (Accelerator.AcceleratorType is AcceleratorType.Cuda or AcceleratorType.CPU)
        {
            fixed (T* data = source)
                target.CopyFromCPUUnsafeAsync(ref *data, source.Length);
        }
        else
        {
            target.CopyFromCPU(source);
        }
    }

}
