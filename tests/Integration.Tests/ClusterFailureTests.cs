using BnDist.Coordinator;
using BnDist.Core.Backends;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Tensors;
using BnDist.Core.Training;
using BnDist.Testing;
using BnDist.Worker;
using Microsoft.Extensions.Logging.Abstractions;

namespace BnDist.Integration.Tests;

/// <summary>No hang, ever: every failure ends the run on every process, within the deadline, with the rank and operation named.</summary>
public sealed class ClusterFailureTests
{
    /// <summary>
    /// On one host (shared memory), through the coordinator, and on two hosts (ranks 0, 2 and 1, 3:
    /// the victim leads its host, so its host's other rank and the other host's leader lose it).
    /// </summary>
    [Theory]
    [InlineData(2, "shm", false)]
    [InlineData(2, "grpc", false)]
    [InlineData(4, "shm", true)]
    public async Task A_worker_that_dies_mid_step_ends_the_run_everywhere_and_the_last_checkpoint_stays_loadable(int workers, string stats,
        bool twoHosts)
    {
        string dir = Directory.CreateTempSubdirectory("bndist-fail-").FullName;
        var config = new TrainingConfig { Model = "convnet", BatchSize = 8, Steps = 10, Evaluate = false };
        var options = new LocalClusterOptions
        {
            StatsTransport = stats,
            HostIds = twoHosts ? [.. Enumerable.Range(0, workers).Select(r => r % 2 == 0 ? "host-a" : "host-b")] : null,
            OperationTimeout = TimeSpan.FromSeconds(10),
            CheckpointDirectory = dir,
            CheckpointEvery = 2,
            // rank 1 crashes in the forward pass of its 6th step (after the checkpoint of step 4)
            ModelBuilder = (c, backend, collective) => WithCrash(ModelFactory.Create(c.Model, backend, collective, c.Seed, c.Normalization),
                backend, collective.Rank == 1 ? 6 : int.MaxValue),
        };
        var started = DateTime.UtcNow;
        await using var cluster = await LocalCluster.StartAsync(config, workers, options);
        var outcome = await cluster.Run.Outcome.WaitAsync(TimeSpan.FromSeconds(30));
        var errors = await cluster.WorkerErrorsAsync(TimeSpan.FromSeconds(30));

        Assert.False(outcome.Succeeded);
        Assert.Contains("rank 1 (worker-001)", outcome.Error);
        Assert.IsType<InvalidOperationException>(errors[1]); // the crash itself
        foreach (int r in Enumerable.Range(0, workers).Where(r => r != 1))
            Assert.Contains("rank 1 (worker-001)", Assert.IsType<ClusterException>(errors[r]).Message);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30));

        string checkpoint = Path.Combine(dir, "checkpoint.safetensors");
        var info = Checkpoint.ReadInfo(checkpoint);
        Assert.Equal(4, info.Step);
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public async Task A_global_batch_larger_than_the_workers_training_set_ends_the_run_at_the_join_with_the_reason()
    {
        // Drop-last leaves no whole batch: the coordinator learns the training set's size only from the workers.
        var config = new TrainingConfig { Model = "mlp:8", BatchSize = 20000, Steps = 1, Evaluate = false };
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => LocalCluster.StartAsync(config, 2));
        Assert.Contains("--batch-size 20000: the workers' training set has 10000 samples, not one whole batch", error.Message);
    }

    [Fact]
    public async Task A_worker_without_the_right_token_is_refused_as_unauthenticated()
    {
        var config = new TrainingConfig { Model = "mlp-paper", BatchSize = 8, Steps = 1, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 1, new LocalClusterOptions { Token = "right" });
        foreach (string? token in new[] { "wrong", null })
        {
            var intruder = new WorkerRunner(new WorkerSettings { Coordinator = cluster.Address, WorkerId = "intruder", Token = token, Threads = 1 },
                NullLogger.Instance);
            var e = await Assert.ThrowsAsync<ClusterException>(() => intruder.RunAsync(CancellationToken.None));
            Assert.Contains("Unauthenticated", e.Message);
        }
        Assert.True((await cluster.WaitAsync()).Coordinator.Succeeded);
    }

    [Fact]
    public void Contributions_with_another_header_or_length_fail_the_run_naming_the_rank_and_operation()
    {
        string? failure = null;
        var hub = new OperationHub(2, TimeSpan.FromSeconds(5), _ => { }, r => failure ??= r);
        hub.Contribute(0, new OperationHeader(3, 0, CollectiveKind.BatchNormStats, 1, 3), [1, 2, 3]);
        hub.Contribute(1, new OperationHeader(3, 0, CollectiveKind.BatchNormStats, 2, 3), [1, 2, 3]);
        Assert.Equal("rank 1 sent step 3 BatchNormStats layer 2 (operation #0, 3 values) where rank 0 sent step 3 BatchNormStats layer 1 (operation #0, 3 values)", failure);

        failure = null;
        hub = new OperationHub(2, TimeSpan.FromSeconds(5), _ => { }, r => failure ??= r);
        hub.Contribute(1, new OperationHeader(0, 0, CollectiveKind.BatchNormStats, 0, 5), [1, 2]);
        Assert.Contains("rank 1 sent 2 values for step 0 BatchNormStats layer 0", failure);

        failure = null;
        hub = new OperationHub(2, TimeSpan.FromSeconds(5), _ => { }, r => failure ??= r);
        hub.Contribute(0, new OperationHeader(0, 1, CollectiveKind.Metrics, -1, 1), [1]);
        Assert.Contains("rank 0 sent operation #1", failure);
        Assert.Contains("out of step", failure);
    }

    [Fact]
    public void Gradient_chunks_are_summed_in_rank_order_as_soon_as_every_rank_has_sent_them()
    {
        const int n = 29; // longer than two vectors, so both the vector and the scalar loops run
        var ranges = new List<(int Offset, int Count)>();
        float[]? final = null;
        var hub = new OperationHub(3, TimeSpan.FromSeconds(5), op => final = op.FloatSum, r => Assert.Fail(r),
            (_, _, offset, count) => ranges.Add((offset, count)));
        var h = new OperationHeader(0, 0, CollectiveKind.Gradients, -1, n);
        // Order-sensitive values: (1e8 + (−1e8)) + 1 = 1, but 1e8 + ((−1e8) + 1) = 0 in float32;
        // and −0 on every rank must stay −0, as in the in-process reference.
        float[][] f = [new float[n], new float[n], new float[n]];
        for (int i = 0; i < n; i++)
        {
            (f[0][i], f[1][i], f[2][i]) = (i % 3) switch { 0 => (1e8f, -1e8f, 1f), 1 => (-0f, -0f, -0f), _ => (0.1f * i, 3e7f, -3e7f) };
        }
        static byte[] Bytes(float[] v, int from, int count) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan(from, count)).ToArray();

        hub.ContributeChunk(0, h, 0, Bytes(f[0], 0, 20));
        hub.ContributeChunk(1, h, 0, Bytes(f[1], 0, 5));
        Assert.Empty(ranges);                               // rank 2 has sent nothing yet
        hub.ContributeChunk(2, h, 0, Bytes(f[2], 0, 18));
        Assert.Equal([(0, 5)], ranges);                     // all three have values 0..4
        hub.ContributeChunk(1, h, 5, Bytes(f[1], 5, n - 5));
        Assert.Equal([(0, 5), (5, 13)], ranges);            // rank 2 limits it to 0..17
        hub.ContributeChunk(2, h, 18, Bytes(f[2], 18, n - 18));
        hub.ContributeChunk(0, h, 20, Bytes(f[0], 20, n - 20));
        Assert.Equal([(0, 5), (5, 13), (18, 2), (20, 9)], ranges);

        // Bit for bit the in-process reference (InProcessGroup, which the equivalence tests trust).
        var group = new InProcessGroup(3);
        using var cpu = new Core.Backends.Cpu.CpuBackend(1);
        var grads = f.Select(v =>
        {
            var t = cpu.Allocate(n);
            cpu.Upload(v, t);
            return new Parameter("g", cpu.Allocate(n), t);
        }).ToArray();
        var ranks = Enumerable.Range(0, 3).Select(r => new Thread(() => group.Members[r].WithBackend(cpu).SumGradients([grads[r]]))).ToList();
        ranks.ForEach(t => t.Start());
        ranks.ForEach(t => t.Join());
        var expected = new float[n];
        cpu.Download(grads[0].Grad, expected);
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), final!.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(1f, final![0]);
        Assert.True(float.IsNegative(final[1]));
    }

    [Fact]
    public void An_operation_a_rank_never_joins_fails_at_the_deadline_naming_the_missing_rank()
    {
        string? failure = null;
        var hub = new OperationHub(3, TimeSpan.FromMilliseconds(100), _ => { }, r => failure ??= r);
        hub.Contribute(0, new OperationHeader(7, 0, CollectiveKind.BatchNormGradSums, 2, 1), [1]);
        hub.Contribute(2, new OperationHeader(7, 0, CollectiveKind.BatchNormGradSums, 2, 1), [1]);
        Thread.Sleep(200);
        hub.CheckDeadlines();
        Assert.Contains("rank(s) 1 did not contribute within", failure);
        Assert.Contains("step 7 BatchNormGradSums layer 2", failure);
    }

    private static Network WithCrash(Network net, IBackend backend, int crashAtForward) =>
        new(net.Architecture, net.Normalization, net.SampleShape, net.Classes, [new CrashLayer(backend, crashAtForward), .. net.Layers]);

    /// <summary>An identity layer that throws on its n-th training forward: a worker dying mid-step.</summary>
    private sealed class CrashLayer(IBackend backend, int crashAt) : Layer(backend, "")
    {
        private int _forwards;

        public override int[] OutputShape(int[] inputShape) => inputShape;

        public override Tensor Forward(Tensor x, bool training)
        {
            if (training && ++_forwards == crashAt) throw new InvalidOperationException("simulated crash");
            return x;
        }

        public override Tensor Backward(Tensor dy) => dy;
    }
}
