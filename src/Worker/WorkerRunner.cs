using BnDist.Core.Backends;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;
using Microsoft.Extensions.Logging;

namespace BnDist.Worker;

/// <summary>The state a worker ended with: every parameter and buffer by name, and its per-step losses.</summary>
public sealed record WorkerOutcome(int Rank, int WorldSize, long Steps, IReadOnlyDictionary<string, float[]> State,
    IReadOnlyList<double> Losses, double TestAccuracy);

/// <summary>
/// One worker's life: join the coordinator, build the network the run describes (or the user's
/// own, <see cref="ModelBuilder"/>) on the local device, describe it to the coordinator and load
/// the initial state it answers with (so every rank starts bit-identical), train this
/// rank's shards with the collectives going over gRPC, then close the stream. Plain class, no
/// hosting: the generic host runs it in <see cref="WorkerService"/>, tests call it directly.
/// </summary>
public sealed class WorkerRunner(WorkerSettings settings, ILogger logger)
{
    /// <summary>Builds the network (default: <see cref="ModelFactory"/> from the run's config); the harness may substitute a user's model.</summary>
    public Func<TrainingConfig, IBackend, ICollective, Network>? ModelBuilder { get; init; }

    /// <summary>Reports every step (for progress displays).</summary>
    public event Action<StepReport>? StepCompleted;

    public async Task<WorkerOutcome> RunAsync(CancellationToken cancellation)
    {
        settings.Validate();
        if (settings.Cpus is { } cpus && !CpuAffinity.Bind(CpuAffinity.Parse(cpus)))
            logger.LogWarning("Worker {WorkerId} could not bind itself to cores {Cpus}", settings.WorkerId, cpus);
        string dataDir = settings.Data ?? Dataset.DefaultDirectory();
        // Read and checked now, normalized once the run's configuration (--normalize) has arrived with the join.
        DataSplit? trainSplit = DataDirectory.Read(dataDir, train: true), testSplit = DataDirectory.Read(dataDir, train: false);
        DataSets.Check(trainSplit, testSplit);

        using var backend = BackendFactory.Create(settings.Device, settings.Threads);
        await using var connection = await ClusterConnection.OpenAsync(settings, trainSplit, testSplit, backend, logger, cancellation);
        var (join, config, collective) = (connection.Membership, connection.Config, connection.Collective);
        var data = DataSets.Create(trainSplit, testSplit, config.Normalize, dataDir);
        if (join.Rank == 0 && (trainSplit.Format == DataFormat.SafeTensors || config.Normalize != ""))
            logger.LogInformation("normalize: {Normalization} ({Origin})", data.Normalization, data.NormalizationOrigin);
        (trainSplit, testSplit) = (null, null);   // the raw copies: garbage from here on (locals of an async method live to its end)
        var (train, test) = (data.Train, data.Test);
        logger.LogInformation("Worker {WorkerId} is rank {Rank} of {World} in run {RunId} on {Device}; shard of step 0: {Shard} samples",
            settings.WorkerId, join.Rank, join.WorldSize, join.RunId, backend.Name,
            DistributedSampler.ShardOf(Math.Min(config.BatchSize, train.Count), join.WorldSize, join.Rank).Count);

        ICollective bnCollective = config.SyncBatchNorm ? collective : SingleProcessCollective.Instance;
        var network = ModelBuilder?.Invoke(config, backend, bnCollective) ??
                      ModelFactory.Create(config.Model, backend, bnCollective, config.Seed, config.Normalization, train.SampleShape, train.Classes);
        var optimizer = new Sgd(backend, network.Parameters, (float)config.Momentum, (float)config.WeightDecay);
        await connection.PrepareAsync(network, optimizer, backend, cancellation);
        if (join.Rank == 0) collective.CaptureState = steps => Checkpoint.ToBytes(backend, network, optimizer, steps, config);
        collective.UseBuckets(network, settings.GradientBucketKiB << 10);

        var trainer = new Trainer(config, backend, network, optimizer, train, test, collective, collective)
        {
            StartStep = join.StartStep,
            LearningRateOf = _ => collective.NextLearningRate,
        };
        var losses = new List<double>();
        double accuracy = double.NaN;
        trainer.StepCompleted += r =>
        {
            losses.Add(r.Result.Loss);
            StepCompleted?.Invoke(r);
        };
        trainer.EpochCompleted += e => accuracy = e.TestAccuracy;
        // The training loop blocks on every collective: give it a thread of its own.
        await Task.Factory.StartNew(() => trainer.Run(cancellation), cancellation, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        cancellation.ThrowIfCancellationRequested();
        await collective.CompleteAsync();

        var state = network.Parameters.ToDictionary(p => p.Name, p =>
        {
            var values = new float[p.Value.Length];
            backend.Download(p.Value, values);
            return values;
        });
        foreach (var b in network.Buffers) state[b.Name] = b.Floats?.ToArray() ?? [b.Longs![0]];
        return new WorkerOutcome(join.Rank, join.WorldSize, trainer.StepsRun, state, losses, accuracy);
    }
}
