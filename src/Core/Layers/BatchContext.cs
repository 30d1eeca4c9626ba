namespace BnDist.Core.Layers;

/// <summary>
/// What a layer may know about the batch in flight besides its tensors: the run's seed, the
/// step, and the index in the data set of each local sample. Dropout draws its masks from
/// them (<see cref="Backends.DropoutMask"/>), so a sample gets the same mask whichever rank holds
/// it. One per network, set by the training step before each forward; reuses its array.
/// </summary>
public sealed class BatchContext
{
    private int[] _samples = [];

    public ulong Seed { get; set; }

    public long Step { get; private set; }

    public int Count { get; private set; }

    /// <summary>The data-set index of each local sample, in batch order.</summary>
    public ReadOnlySpan<int> SampleIndices => _samples.AsSpan(0, Count);

    public void Set(long step, ReadOnlySpan<int> sampleIndices)
    {
        if (_samples.Length < sampleIndices.Length) _samples = new int[sampleIndices.Length];
        sampleIndices.CopyTo(_samples);
        (Step, Count) = (step, sampleIndices.Length);
    }
}
