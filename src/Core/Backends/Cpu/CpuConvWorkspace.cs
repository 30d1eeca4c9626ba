using System.Runtime.InteropServices;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Scratch memory for <see cref="CpuConv"/>: one column buffer and one padded-image buffer per worker slot,
/// the per-chunk partial sums of dW and db, the packed weights and tap offsets. Buffers grow on demand to the
/// largest layer seen and are then reused unchanged, so a training loop that cycles through the same layers allocates only during its first step. One workspace
/// serves one convolution call at a time (reuse it across layers, not across concurrent calls).
/// </summary>
/// <remarks>
/// Memory is native and 64-byte aligned (the kernels use aligned-friendly 512-bit accesses); it is freed by
/// <see cref="Dispose"/> or, failing that, by the finalizer.
/// </remarks>
public sealed unsafe class CpuConvWorkspace : IDisposable
{
    private Buffer[] _columns = [];
    private Buffer[] _padded = [];
    private readonly Buffer _offsets = new();
    private readonly Buffer _phaseOffsets = new();
    private readonly Buffer _dwPartials = new();
    private readonly Buffer _dbPartials = new();
    private readonly Buffer _packedWeights = new();
    private long _dwStride;
    private int _dbStride;

    /// <summary>The cached job object of <see cref="CpuConv"/> (so a call allocates no delegate).</summary>
    internal CpuConv.Job Job { get; } = new();

    /// <summary>Makes sure <paramref name="slots"/> column buffers of <paramref name="floats"/> each exist.</summary>
    internal void EnsureColumns(int slots, long floats) => EnsureSlots(ref _columns, slots, floats);

    /// <summary>Column buffer of a slot (valid after <see cref="EnsureColumns"/>).</summary>
    internal float* Column(int slot) => _columns[slot].Pointer;

    /// <summary>Makes sure <paramref name="slots"/> buffers for a zero-bordered image (<see cref="CpuDirectConv.Pad"/>) exist.</summary>
    internal void EnsurePadded(int slots, long floats) => EnsureSlots(ref _padded, slots, floats);

    /// <summary>Padded-image buffer of a slot (valid after <see cref="EnsurePadded"/>).</summary>
    internal float* Padded(int slot) => _padded[slot].Pointer;

    /// <summary>The tap offsets of <see cref="CpuDirectConv.Offsets"/>, room for <paramref name="count"/>.</summary>
    internal int* Offsets(int count) => (int*)_offsets.Ensure(count);

    /// <summary>The tap offsets of <see cref="CpuDirectConv.PackStridedInputGradient"/>, room for <paramref name="count"/>.</summary>
    internal int* PhaseOffsets(int count) => (int*)_phaseOffsets.Ensure(count);

    private static void EnsureSlots(ref Buffer[] buffers, int slots, long floats)
    {
        if (buffers.Length < slots)
        {
            var grown = new Buffer[slots];
            buffers.CopyTo(grown, 0);
            for (int i = buffers.Length; i < slots; i++)
                grown[i] = new Buffer();
            buffers = grown;
        }
        for (int i = 0; i < slots; i++)
            buffers[i].Ensure(floats);
    }

    /// <summary>Makes room for <paramref name="chunks"/> partial dW ([dwFloats]) and db ([dbFloats]) sums.</summary>
    internal void EnsurePartials(int chunks, long dwFloats, int dbFloats)
    {
        _dwStride = (dwFloats + 15) & ~15L;
        _dbStride = (dbFloats + 15) & ~15;
        _dwPartials.Ensure(chunks * _dwStride);
        _dbPartials.Ensure((long)chunks * _dbStride);
    }

    /// <summary>Weights packed once per call as the GEMM's A operand (see <see cref="Sgemm.PackedA"/>).</summary>
    internal float* PackedWeights(long floats) => _packedWeights.Ensure(floats);

    /// <summary>Partial dW of a sample chunk (chunk 0 sums straight into the caller's dW and leaves this unused).</summary>
    internal float* DwPartial(int chunk) => _dwPartials.Pointer + chunk * _dwStride;

    /// <summary>Partial db of a sample chunk.</summary>
    internal float* DbPartial(int chunk) => _dbPartials.Pointer + (long)chunk * _dbStride;

    public void Dispose()
    {
        foreach (var b in _columns)
            b.Dispose();
        foreach (var b in _padded)
            b.Dispose();
        _offsets.Dispose();
        _phaseOffsets.Dispose();
        _dwPartials.Dispose();
        _dbPartials.Dispose();
        _packedWeights.Dispose();
    }

    /// <summary>A growable native float buffer; reallocates only when asked for more than it holds.</summary>
    private sealed class Buffer : IDisposable
    {
        private long _capacity;

        public float* Pointer { get; private set; }

        public float* Ensure(long floats)
        {
            if (floats <= _capacity)
                return Pointer;
            NativeMemory.AlignedFree(Pointer);
            Pointer = null;
            _capacity = 0;
            Pointer = (float*)NativeMemory.AlignedAlloc((nuint)floats * sizeof(float), 64);
            _capacity = floats;
            return Pointer;
        }

        public void Dispose()
        {
            NativeMemory.AlignedFree(Pointer);
            Pointer = null;
            _capacity = 0;
            GC.SuppressFinalize(this);
        }

        ~Buffer() => NativeMemory.AlignedFree(Pointer);
    }
}
