using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;

namespace BnDist.Core.Tests.Support;

/// <summary>The final state of a run: every parameter and buffer by name, and the loss of each step.</summary>
internal sealed record RunResult(Dictionary<string, float[]> State, List<double> Losses);

/// <summary>Trains the same config on K in-process ranks (one thread each) or in one process.</summary>
internal static class ShardedRun
{
    public static RunResult Train(TrainingConfig config, Dataset data, int worldSize,
        Func<TrainingConfig, IBackend, ICollective, Network>? build = null)
    {
        var group = new InProcessGroup(worldSize, TimeSpan.FromSeconds(60));
        var results = new RunResult[worldSize];
        var threads = Enumerable.Range(0, worldSize).Select(rank => new Thread(() =>
        {
            using var backend = new CpuBackend(1);
            var member = group.Members[rank].WithBackend(backend);
            results[rank] = TrainRank(config, data, backend, member, member, build);
        })).ToList();
        Exception? error = null;
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        return error is null ? results[0] : throw error;
    }

    public static RunResult TrainRank(TrainingConfig config, Dataset data, CpuBackend backend, ICollective collective, IGradientReducer gradients,
        Func<TrainingConfig, IBackend, ICollective, Network>? build = null) =>
        TrainRank(config, data, backend, collective, _ => gradients, build);

    /// <summary>As the other overload, with a gradient reducer made for the rank's network (a bucketed one hooks into its backward).</summary>
    public static RunResult TrainRank(TrainingConfig config, Dataset data, CpuBackend backend, ICollective collective,
        Func<Network, IGradientReducer> gradientsFor, Func<TrainingConfig, IBackend, ICollective, Network>? build = null)
    {
        var net = build?.Invoke(config, backend, collective) ?? ModelFactory.Create(config.Model, backend, collective, config.Seed, config.Normalization);
        var sgd = new Sgd(backend, net.Parameters, (float)config.Momentum, (float)config.WeightDecay);
        var trainer = new Trainer(config, backend, net, sgd, data, null, collective, gradientsFor(net));
        var losses = new List<double>();
        trainer.StepCompleted += r => losses.Add(r.Result.Loss);
        trainer.Run();
        var state = net.Parameters.ToDictionary(p => p.Name, p => backend.Read(p.Value));
        foreach (var b in net.Buffers) state[b.Name] = b.Floats ?? [b.Longs![0]];
        return new RunResult(state, losses);
    }

    /// <summary>One process on the whole batch; <paramref name="build"/> a model of one's own (default: the config's).</summary>
    public static RunResult TrainSingle(TrainingConfig config, Dataset data, Func<TrainingConfig, IBackend, ICollective, Network>? build = null)
    {
        using var backend = new CpuBackend(1);
        return TrainRank(config, data, backend, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance, build);
    }
}
