using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Collectives.SharedMemory;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Tests.Support;
using BnDist.Core.Training;

namespace BnDist.Core.Tests.Collectives;

/// <summary>
/// Gradient buckets summed while backward goes on (DDP's Reducer) against one sum after backward:
/// the same sums, bit for bit, because each value is still summed over the ranks in rank order.
/// </summary>
public sealed class BucketedGradientReducerTests
{
    private static readonly Dataset Data = Dataset.Load(Dataset.DefaultDirectory(), train: true);

    /// <summary>
    /// Over the host's shared memory and over the in-process group (a group of its own: the bucket
    /// thread must not meet the BN statistics of the training thread at one barrier).
    /// </summary>
    [Theory]
    [InlineData("convnet", 3, 16, "shm")]
    [InlineData("convnet", 2, 1, "shm")]    // a bucket per parameter (each is larger than 1 KiB or alone)
    [InlineData("resnet20", 3, 64, "shm")]  // residual blocks: backward readies a block's shortcut before its body
    [InlineData("convnet", 3, 16, "in-process")]
    public void Buckets_overlapped_with_backward_equal_one_sum_after_backward_bit_for_bit(string model, int k, int bucketKiB, string transport)
    {
        var config = new TrainingConfig { Model = model, BatchSize = 11, Steps = 3, Seed = 4, LearningRate = 0.05, Evaluate = false };
        var reference = ShardedRun.Train(config, Data, k);

        string path = Path.Combine(SharedMemoryGroup.IsSupported ? SharedMemoryGroup.DefaultDirectory : Path.GetTempPath(), $"bndist-test-{Guid.NewGuid():n}");
        var group = new InProcessGroup(k, TimeSpan.FromSeconds(60));
        var gradientGroup = new InProcessGroup(k, TimeSpan.FromSeconds(60));
        var results = new RunResult[k];
        var launched = new int[k];
        var bucketCounts = new int[k];
        var errors = new Exception?[k];
        var threads = Enumerable.Range(0, k).Select(rank => new Thread(() =>
        {
            try
            {
                using var backend = new CpuBackend(1);
                using var shared = SharedMemoryGroup.Attach(path, rank, [.. Enumerable.Range(0, k)], TimeSpan.FromSeconds(60));
                var member = group.Members[rank].WithBackend(backend);
                BucketedGradientReducer? buckets = null;
                results[rank] = ShardedRun.TrainRank(config, Data, backend, member, net => buckets = new BucketedGradientReducer(backend, net,
                    transport == "shm" ? shared : gradientGroup.Members[rank], bucketKiB << 10));
                using var made = buckets!;
                (launched[rank], bucketCounts[rank]) = (made.LaunchedDuringBackward, made.Buckets.Count);
                shared.Complete();
            }
            catch (Exception e)
            {
                errors[rank] = e;
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.All(errors, e => Assert.Null(e));

        Assert.True(bucketCounts[0] > 1, $"{model} in {bucketKiB} KiB buckets made {bucketCounts[0]} bucket");
        // Every bucket was handed to the communication thread during backward, none after it.
        Assert.All(launched, n => Assert.Equal(bucketCounts[0], n));
        for (int r = 0; r < k; r++)
        {
            Assert.Equal(reference.Losses, results[r].Losses);
            foreach (var (name, values) in reference.State) Assert.Equal(values, results[r].State[name]);
        }
    }

    [Fact]
    public void Buckets_cover_every_parameter_once_in_reverse_forward_order_within_the_size()
    {
        using var backend = new CpuBackend(1);
        var net = ModelFactory.Create("resnet20", backend, SingleProcessCollective.Instance, 1);
        using var buckets = new BucketedGradientReducer(backend, net, new NoTransport(), 32 << 10);
        var order = buckets.Buckets.SelectMany(b => b).ToList();
        Assert.Equal(net.Parameters.Select(p => p.Name).Reverse(), order);
        var sizes = net.Parameters.ToDictionary(p => p.Name, p => p.Grad.Length * sizeof(float));
        foreach (var bucket in buckets.Buckets)
            Assert.True(bucket.Count == 1 || bucket.Sum(n => sizes[n]) <= 32 << 10, $"bucket [{string.Join(", ", bucket)}] exceeds 32 KiB");
    }

    private sealed class NoTransport : IFloatAllReduce
    {
        public void AllReduce(float[] buffer, int length, long step)
        {
        }
    }
}
