using BnDist.Core.Data;

namespace BnDist.Core.Tests.Data;

public class DistributedSamplerTests
{
    public static TheoryData<int, int, int> Layouts()
    {
        var data = new TheoryData<int, int, int>();
        // (datasetCount, globalBatch, worldSize): batches K divides, doesn't, smaller than K, short last batch.
        foreach (int k in new[] { 1, 2, 3, 4, 5 })
            foreach (var (n, b) in new[] { (100, 20), (101, 20), (97, 7), (10, 3), (9, 2), (5, 1), (7, 64), (60, 12) })
                data.Add(n, b, k);
        return data;
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ShardsOfAllRanks_TileEachGlobalBatchInRankOrder(int count, int batch, int world)
    {
        foreach (bool dropLast in new[] { false, true })
        {
            if (dropLast && batch > count)
                continue;
            var samplers = Enumerable.Range(0, world)
                .Select(r => new DistributedSampler(count, batch, world, r, shuffle: true, seed: 7, dropLast)).ToArray();
            int batches = samplers[0].BatchesPerEpoch;
            Assert.Equal(dropLast ? count / batch : (count + batch - 1) / batch, batches);

            var seen = new List<int>();
            var buffer = new int[samplers[0].MaxLocalBatchSize];
            for (int b = 0; b < batches; b++)
            {
                var global = samplers[0].GlobalBatch(1, b).ToArray();
                int expectedSize = Math.Min(batch, count - b * batch);
                Assert.Equal(expectedSize, global.Length);
                Assert.Equal(expectedSize, samplers[0].BatchSize(b));

                var concatenated = new List<int>();
                foreach (var s in samplers)
                {
                    Assert.Equal(global, s.GlobalBatch(1, b).ToArray());   // every rank agrees
                    s.GetBatch(1, b, buffer, out int n);
                    var (offset, shardCount) = DistributedSampler.ShardOf(global.Length, world, s.Rank);
                    Assert.Equal(shardCount, n);
                    Assert.Equal(concatenated.Count, offset);
                    Assert.Equal(global.Length / world + (s.Rank < global.Length % world ? 1 : 0), n);
                    Assert.Equal(buffer[..n], s.LocalBatch(1, b).ToArray());
                    concatenated.AddRange(buffer[..n]);
                }
                Assert.Equal(global, concatenated);
                seen.AddRange(global);
            }
            // Over an epoch the batches are disjoint and cover the (kept part of the) permutation.
            Assert.Equal(seen.Count, seen.Distinct().Count());
            Assert.Equal(samplers[0].SamplesPerEpoch, seen.Count);
            Assert.Equal(samplers[0].Permutation(1)[..seen.Count].ToArray(), seen);
            if (!dropLast)
                Assert.Equal(Enumerable.Range(0, count), seen.Order());
        }
    }

    [Fact]
    public void ShardOf_SplitsRemainderOverTheFirstRanks()
    {
        Assert.Equal((0, 3), DistributedSampler.ShardOf(10, 4, 0));
        Assert.Equal((3, 3), DistributedSampler.ShardOf(10, 4, 1));
        Assert.Equal((6, 2), DistributedSampler.ShardOf(10, 4, 2));
        Assert.Equal((8, 2), DistributedSampler.ShardOf(10, 4, 3));
        // Fewer samples than ranks: the last ranks get none, at the end of the batch.
        Assert.Equal((0, 1), DistributedSampler.ShardOf(2, 5, 0));
        Assert.Equal((1, 1), DistributedSampler.ShardOf(2, 5, 1));
        Assert.Equal((2, 0), DistributedSampler.ShardOf(2, 5, 2));
        Assert.Equal((2, 0), DistributedSampler.ShardOf(2, 5, 4));
        Assert.Equal((0, 0), DistributedSampler.ShardOf(0, 3, 1));
    }

    [Fact]
    public void EmptyShard_WhenTheLastBatchIsSmallerThanTheWorld()
    {
        // 10 samples, batch 4, 3 workers: batches of 4, 4, 2; rank 2 gets nothing in the last one.
        var s = new DistributedSampler(10, 4, 3, 2, shuffle: false, seed: 0);
        Assert.Equal(3, s.BatchesPerEpoch);
        Assert.Equal(2, s.BatchSize(2));
        Span<int> buffer = stackalloc int[s.MaxLocalBatchSize];
        s.GetBatch(0, 2, buffer, out int n);
        Assert.Equal(0, n);
        Assert.True(s.LocalBatch(0, 2).IsEmpty);
        s.GetBatch(0, 0, buffer, out n);
        Assert.Equal([3], buffer[..n].ToArray());
        Assert.Equal([8, 9], s.GlobalBatch(5, 2).ToArray());
    }

    [Fact]
    public void DropLast_DropsTheShortBatch()
    {
        var keep = new DistributedSampler(10, 4, 1, 0, shuffle: true, seed: 3);
        var drop = new DistributedSampler(10, 4, 1, 0, shuffle: true, seed: 3, dropLast: true);
        Assert.Equal(3, keep.BatchesPerEpoch);
        Assert.Equal(2, drop.BatchesPerEpoch);
        Assert.Equal(8, drop.SamplesPerEpoch);
        Assert.Equal(keep.GlobalBatch(0, 1).ToArray(), drop.GlobalBatch(0, 1).ToArray());
        Assert.Equal(2, keep.GlobalBatch(0, 2).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => drop.GlobalBatch(0, 2));

        var exact = new DistributedSampler(12, 4, 2, 0, shuffle: false, seed: 0, dropLast: true);
        Assert.Equal(3, exact.BatchesPerEpoch);
    }

    [Fact]
    public void Permutation_IsAPermutation_DeterminedBySeedAndEpoch()
    {
        var a = new DistributedSampler(1000, 32, 4, 0, shuffle: true, seed: 42);
        var b = new DistributedSampler(1000, 32, 4, 3, shuffle: true, seed: 42);
        var c = new DistributedSampler(1000, 32, 4, 0, shuffle: true, seed: 43);

        var e0 = a.Permutation(0).ToArray();
        Assert.Equal(Enumerable.Range(0, 1000), e0.Order());
        Assert.NotEqual(Enumerable.Range(0, 1000), e0);

        Assert.Equal(e0, b.Permutation(0).ToArray());        // same (seed, epoch): same, on any rank
        var e1 = a.Permutation(1).ToArray();
        Assert.Equal(Enumerable.Range(0, 1000), e1.Order());
        Assert.NotEqual(e0, e1);                              // different epoch: different
        Assert.Equal(e0, a.Permutation(0).ToArray());        // and back again
        Assert.NotEqual(e0, c.Permutation(0).ToArray());     // different seed: different

        // Neighbouring epochs are not shifted copies of each other.
        Assert.True(e0.Zip(e1).Count(p => p.First == p.Second) < 10);
    }

    [Fact]
    public void Permutation_IsPinned()
    {
        // Every worker, on every machine and .NET version, must draw exactly these.
        var p = new int[10];
        DistributedSampler.FillPermutation(p, seed: 42, epoch: 0);
        Assert.Equal(PinnedSeed42Epoch0, p);
        DistributedSampler.FillPermutation(p, seed: 42, epoch: 1);
        Assert.Equal(PinnedSeed42Epoch1, p);
    }

    // Cross-checked against an independent Python transcription of SplitMix64 + Lemire + Fisher–Yates.
    private static readonly int[] PinnedSeed42Epoch0 = [0, 8, 9, 2, 3, 7, 6, 1, 4, 5];
    private static readonly int[] PinnedSeed42Epoch1 = [6, 2, 8, 9, 1, 3, 7, 5, 0, 4];

    [Fact]
    public void SplitMix64_MatchesTheReferenceImplementation()
    {
        // Outputs of Vigna's splitmix64.c for seed 1234567.
        var rng = new SplitMix64(1234567);
        Assert.Equal(6457827717110365317UL, rng.Next());
        Assert.Equal(3203168211198807973UL, rng.Next());
        Assert.Equal(9817491932198370423UL, rng.Next());
        Assert.Equal(4593380528125082431UL, rng.Next());
        Assert.Equal(16408922859458223821UL, rng.Next());
    }

    [Fact]
    public void NextBelow_IsInRangeAndRoughlyUniform()
    {
        var rng = new SplitMix64(99);
        var counts = new int[7];
        for (int i = 0; i < 70000; i++)
            counts[rng.NextBelow(7)]++;
        Assert.All(counts, c => Assert.InRange(c, 9500, 10500));
        Assert.Equal(0UL, rng.NextBelow(1));
    }

    [Fact]
    public void NoShuffle_IsTheIdentityEveryEpoch()
    {
        var s = new DistributedSampler(23, 5, 2, 1, shuffle: false, seed: 123);
        Assert.Equal(Enumerable.Range(0, 23), s.Permutation(0).ToArray());
        Assert.Equal(Enumerable.Range(0, 23), s.Permutation(9).ToArray());
        Assert.Equal([13, 14], s.LocalBatch(4, 2).ToArray());   // batch 2 = 10..14, rank 1 of 2 takes the last 2
        Assert.Equal([20, 21, 22], s.GlobalBatch(0, 4).ToArray());
    }

    [Fact]
    public void SpansStayValidAcrossEpochs_AndGetBatchDoesNotAllocate()
    {
        var s = new DistributedSampler(100, 10, 3, 1, shuffle: true, seed: 5);
        var epoch0 = s.GlobalBatch(0, 0);
        var copy = epoch0.ToArray();
        _ = s.Permutation(1);
        Assert.Equal(copy, epoch0.ToArray());

        Span<int> buffer = stackalloc int[s.MaxLocalBatchSize];
        s.GetBatch(1, 0, buffer, out _);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int b = 0; b < s.BatchesPerEpoch; b++)
            s.GetBatch(1, b, buffer, out _);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    [Fact]
    public void Arguments_AreValidated()
    {
        static string Param(Action a) => Assert.Throws<ArgumentOutOfRangeException>(a).ParamName!;

        Assert.Equal("datasetCount", Param(() => new DistributedSampler(0, 1, 1, 0, true, 0)));
        Assert.Equal("globalBatch", Param(() => new DistributedSampler(10, 0, 1, 0, true, 0)));
        Assert.Equal("worldSize", Param(() => new DistributedSampler(10, 1, 0, 0, true, 0)));
        Assert.Equal("rank", Param(() => new DistributedSampler(10, 1, 2, 2, true, 0)));
        Assert.Equal("rank", Param(() => new DistributedSampler(10, 1, 2, -1, true, 0)));
        Assert.Equal("globalBatch", Param(() => new DistributedSampler(10, 11, 2, 0, true, 0, dropLast: true)));
        _ = new DistributedSampler(10, 11, 2, 0, true, 0);   // one short batch is fine without dropLast

        var s = new DistributedSampler(10, 4, 2, 0, true, 0);
        Assert.Equal("epoch", Param(() => s.Permutation(-1)));
        Assert.Equal("batchIndex", Param(() => s.GlobalBatch(0, 3)));
        Assert.Equal("batchIndex", Param(() => s.GlobalBatch(0, -1)));
        Assert.Equal("destination", Assert.Throws<ArgumentException>(() => s.GetBatch(0, 0, new int[1], out _)).ParamName);

        Assert.Equal("batchSize", Param(() => DistributedSampler.ShardOf(-1, 2, 0)));
        Assert.Equal("worldSize", Param(() => DistributedSampler.ShardOf(4, 0, 0)));
        Assert.Equal("rank", Param(() => DistributedSampler.ShardOf(4, 2, 2)));
    }
}
