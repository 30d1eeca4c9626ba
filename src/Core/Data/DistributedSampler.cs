namespace BnDist.Core.Data;

/// <summary>
/// Which samples each worker trains on: PyTorch's <c>DistributedSampler</c> semantics adapted to a
/// GLOBAL batch. Each epoch has a permutation of [0, DatasetCount) — a Fisher–Yates shuffle drawn
/// from <see cref="SplitMix64"/> seeded by (seed, epoch), or the identity when shuffling is off —
/// identical on every process. Global batch b is positions [b·B, (b+1)·B) of that permutation
/// (B = <see cref="GlobalBatchSize"/>; the last batch is short unless <see cref="DropLast"/>), and
/// worker <see cref="Rank"/> of <see cref="WorldSize"/> K takes its contiguous slice of it
/// (<see cref="ShardOf"/>): with B' the batch's actual size, the first B' mod K ranks take
/// ⌊B'/K⌋ + 1 samples and the rest ⌊B'/K⌋, so a rank gets none when B' &lt; K.
/// </summary>
/// <remarks>
/// Holds the arguments and the permutation of the most recently used epoch. Safe to use from
/// several threads; spans it returns stay valid (and unchanged) after later calls, since a new
/// epoch's permutation goes into a new array. Apart from that one array per epoch, nothing is
/// allocated per call.
/// </remarks>
public sealed class DistributedSampler
{
    private sealed record EpochPermutation(int Epoch, int[] Indices);

    private volatile EpochPermutation? _cached;

    /// <param name="datasetCount">Number of samples, ≥ 1.</param>
    /// <param name="globalBatch">Samples per global batch over all workers, ≥ 1.</param>
    /// <param name="worldSize">Number of workers K, ≥ 1.</param>
    /// <param name="rank">This worker, in [0, worldSize).</param>
    /// <param name="shuffle">Shuffle each epoch (else the identity order).</param>
    /// <param name="seed">Seed of the shuffle; all workers must use the same one.</param>
    /// <param name="dropLast">Drop the last batch when it is short.</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of range (named by ParamName),
    /// or dropLast with globalBatch &gt; datasetCount, which would leave no batch at all.</exception>
    public DistributedSampler(int datasetCount, int globalBatch, int worldSize, int rank,
                              bool shuffle, ulong seed, bool dropLast = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(datasetCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(globalBatch);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(worldSize);
        CheckRank(rank, worldSize);
        if (dropLast && globalBatch > datasetCount)
            throw new ArgumentOutOfRangeException(nameof(globalBatch), globalBatch,
                $"globalBatch ({globalBatch}) exceeds datasetCount ({datasetCount}) with dropLast: an epoch would have no batches");

        DatasetCount = datasetCount;
        GlobalBatchSize = globalBatch;
        WorldSize = worldSize;
        Rank = rank;
        Shuffle = shuffle;
        Seed = seed;
        DropLast = dropLast;
        BatchesPerEpoch = dropLast ? datasetCount / globalBatch : (int)(((long)datasetCount + globalBatch - 1) / globalBatch);
    }

    /// <summary>Number of samples in the dataset.</summary>
    public int DatasetCount { get; }

    /// <summary>Samples per (full) global batch, B.</summary>
    public int GlobalBatchSize { get; }

    /// <summary>Number of workers, K.</summary>
    public int WorldSize { get; }

    /// <summary>This worker's rank, in [0, WorldSize).</summary>
    public int Rank { get; }

    /// <summary>Whether each epoch is shuffled.</summary>
    public bool Shuffle { get; }

    /// <summary>The shuffle seed.</summary>
    public ulong Seed { get; }

    /// <summary>Whether a short last batch is dropped.</summary>
    public bool DropLast { get; }

    /// <summary>Global batches per epoch: ⌈DatasetCount / B⌉, or ⌊DatasetCount / B⌋ with DropLast.</summary>
    public int BatchesPerEpoch { get; }

    /// <summary>Samples per epoch actually used: all of them, or BatchesPerEpoch·B with DropLast.</summary>
    public int SamplesPerEpoch => DropLast ? BatchesPerEpoch * GlobalBatchSize : DatasetCount;

    /// <summary>The most samples any rank gets in one batch, ⌈B / K⌉: a buffer size for <see cref="GetBatch"/>.</summary>
    public int MaxLocalBatchSize => ShardOf(GlobalBatchSize, WorldSize, 0).Count;

    /// <summary>
    /// Rank <paramref name="rank"/>'s slice of a batch of <paramref name="batchSize"/> samples split over
    /// <paramref name="worldSize"/> ranks: the first batchSize mod worldSize ranks get one sample more;
    /// slices are contiguous and in rank order, so they tile [0, batchSize).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">batchSize &lt; 0, worldSize &lt; 1, or rank not in [0, worldSize).</exception>
    public static (int Offset, int Count) ShardOf(int batchSize, int worldSize, int rank)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(worldSize);
        CheckRank(rank, worldSize);
        int quotient = batchSize / worldSize, remainder = batchSize % worldSize;
        return (rank * quotient + Math.Min(rank, remainder), quotient + (rank < remainder ? 1 : 0));
    }

    /// <summary>Size B' of global batch <paramref name="batchIndex"/>: B, or less for a short last batch.</summary>
    public int BatchSize(int batchIndex)
    {
        CheckBatchIndex(batchIndex);
        return Math.Min(GlobalBatchSize, DatasetCount - batchIndex * GlobalBatchSize);
    }

    /// <summary>This rank's slice of global batch <paramref name="batchIndex"/>, as positions within that batch.</summary>
    public (int Offset, int Count) LocalShard(int batchIndex) => ShardOf(BatchSize(batchIndex), WorldSize, Rank);

    /// <summary>The sample order of <paramref name="epoch"/> (a permutation of [0, DatasetCount)).</summary>
    /// <exception cref="ArgumentOutOfRangeException">epoch &lt; 0.</exception>
    public ReadOnlySpan<int> Permutation(int epoch) => PermutationArray(epoch);

    /// <summary>The sample indices of global batch <paramref name="batchIndex"/> of <paramref name="epoch"/>, all ranks together.</summary>
    /// <exception cref="ArgumentOutOfRangeException">epoch &lt; 0 or batchIndex not in [0, BatchesPerEpoch).</exception>
    public ReadOnlySpan<int> GlobalBatch(int epoch, int batchIndex)
    {
        int size = BatchSize(batchIndex);
        return PermutationArray(epoch).AsSpan(batchIndex * GlobalBatchSize, size);
    }

    /// <summary>This rank's sample indices of global batch <paramref name="batchIndex"/> of <paramref name="epoch"/> (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">epoch &lt; 0 or batchIndex not in [0, BatchesPerEpoch).</exception>
    public ReadOnlySpan<int> LocalBatch(int epoch, int batchIndex)
    {
        var (offset, count) = LocalShard(batchIndex);
        return GlobalBatch(epoch, batchIndex).Slice(offset, count);
    }

    /// <summary>
    /// Copies this rank's sample indices of global batch <paramref name="batchIndex"/> of
    /// <paramref name="epoch"/> into <paramref name="destination"/> (which needs room for
    /// <see cref="MaxLocalBatchSize"/> to be safe for every batch); <paramref name="count"/> is
    /// how many were written (possibly 0).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">epoch &lt; 0 or batchIndex not in [0, BatchesPerEpoch).</exception>
    /// <exception cref="ArgumentException">destination is too short.</exception>
    public void GetBatch(int epoch, int batchIndex, Span<int> destination, out int count)
    {
        var local = LocalBatch(epoch, batchIndex);
        if (local.Length > destination.Length)
            throw new ArgumentException(
                $"destination has room for {destination.Length} indices, rank {Rank} needs {local.Length} for batch {batchIndex}",
                nameof(destination));
        local.CopyTo(destination);
        count = local.Length;
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with the permutation of [0, destination.Length) that
    /// (seed, epoch) selects: the identity shuffled by Fisher–Yates with <see cref="SplitMix64"/>
    /// seeded by <see cref="EpochSeed"/>. Deterministic across processes, machines and .NET versions.
    /// </summary>
    public static void FillPermutation(Span<int> destination, ulong seed, int epoch)
    {
        for (int i = 0; i < destination.Length; i++)
            destination[i] = i;
        var rng = new SplitMix64(EpochSeed(seed, epoch));
        for (int i = destination.Length - 1; i > 0; i--)
        {
            int j = (int)rng.NextBelow((ulong)i + 1);
            (destination[i], destination[j]) = (destination[j], destination[i]);
        }
    }

    /// <summary>
    /// The generator state for (seed, epoch): both hashed, so neighbouring epochs or seeds give
    /// unrelated streams (a plain seed + epoch would make epoch e+1's stream epoch e's shifted by one).
    /// </summary>
    public static ulong EpochSeed(ulong seed, int epoch) =>
        SplitMix64.Mix(seed + SplitMix64.Mix((ulong)(uint)epoch + 0x632BE59BD9B4E019UL));

    private int[] PermutationArray(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        int key = Shuffle ? epoch : 0;   // without shuffling every epoch is the identity
        var cached = _cached;
        if (cached is not null && cached.Epoch == key)
            return cached.Indices;

        var indices = new int[DatasetCount];
        if (Shuffle)
            FillPermutation(indices, Seed, epoch);
        else
            for (int i = 0; i < indices.Length; i++)
                indices[i] = i;
        _cached = new EpochPermutation(key, indices);
        return indices;
    }

    private void CheckBatchIndex(int batchIndex)
    {
        if ((uint)batchIndex >= (uint)BatchesPerEpoch)
            throw new ArgumentOutOfRangeException(nameof(batchIndex), batchIndex,
                $"batchIndex must be in [0, {BatchesPerEpoch}) ({BatchesPerEpoch} batches per epoch)");
    }

    private static void CheckRank(int rank, int worldSize)
    {
        if ((uint)rank >= (uint)worldSize)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {worldSize}) (worldSize = {worldSize})");
    }
}
