using System.Net.Http;
using System.Text.Json;
using BnDist.Core.Backends;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;
using BnDist.Protos;
using BnDist.Protos.V1;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace BnDist.Worker;

/// <summary>The state a worker ended with: every parameter and buffer by name, and its per-step losses.</summary>
public sealed record WorkerOutcome(int Rank, int WorldSize, long Steps, IReadOnlyDictionary<string, float[]> State,
    IReadOnlyList<double> Losses, double TestAccuracy);

/// <summary>
/// One worker's life: join the coordinator, build the network the run describes on the local
/// device and load the initial state it sent (so every rank starts bit-identical), train this
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
        string dataDir = settings.Data ?? Dataset.DefaultDirectory();
        var train = Dataset.Load(dataDir, train: true);
        var test = Dataset.Load(dataDir, train: false);

        using var channel = GrpcChannel.ForAddress(settings.Coordinator, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = WireLimits.MaxMessageBytes,
            MaxSendMessageSize = WireLimits.MaxMessageBytes,
            HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true, ConnectTimeout = TimeSpan.FromSeconds(10) },
        });
        var client = new Cluster.ClusterClient(channel);
        var headers = new Metadata();
        if (settings.Token is not null) headers.Add(RunToken.Header, RunToken.Scheme + settings.Token);

        using var backend = BackendFactory.Create(settings.Device, settings.Threads);
        var join = await JoinAsync(client, headers, train, test, backend.Name, cancellation);
        var config = JsonSerializer.Deserialize<TrainingConfig>(join.ConfigJson)
            ?? throw new ClusterException("the coordinator sent no run configuration");
        logger.LogInformation("Worker {WorkerId} is rank {Rank} of {World} in run {RunId} on {Device}; shard of step 0: {Shard} samples",
            settings.WorkerId, join.Rank, join.WorldSize, join.RunId, backend.Name,
            DistributedSampler.ShardOf(Math.Min(config.BatchSize, train.Count), join.WorldSize, join.Rank).Count);

        await using var collective = new GrpcCollective(client, headers, join.RunId, join.Rank, join.WorldSize,
            TimeSpan.FromMilliseconds(join.OperationTimeoutMs), backend, cancellation) { NextLearningRate = join.LearningRate };
        ICollective bnCollective = config.SyncBatchNorm ? collective : SingleProcessCollective.Instance;
        var network = (ModelBuilder ?? DefaultModel)(config, backend, bnCollective);
        var optimizer = new Sgd(backend, network.Parameters, (float)config.Momentum, (float)config.WeightDecay);
        Checkpoint.Load(join.InitialState.ToByteArray(), "the initial state from the coordinator", backend, network, optimizer);
        if (join.Rank == 0) collective.CaptureState = steps => Checkpoint.ToBytes(backend, network, optimizer, steps, config);

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

    private static Network DefaultModel(TrainingConfig config, IBackend backend, ICollective collective) =>
        ModelFactory.Create(config.Model, backend, collective, config.Seed, config.Normalization);

    private async Task<JoinReply> JoinAsync(Cluster.ClusterClient client, Metadata headers, Dataset train, Dataset test, string device,
        CancellationToken cancellation)
    {
        var request = new JoinRequest
        {
            WorkerId = settings.WorkerId,
            Device = device,
            ProtocolVersion = WireLimits.ProtocolVersion,
            Dataset = new DatasetFingerprint { TrainCount = train.Count, TestCount = test.Count, TrainLabelsHash = LabelsHash(train) },
        };
        // The coordinator may not be up yet (a cluster starting together): retry briefly while unreachable.
        var giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                return await client.JoinAsync(request, headers, cancellationToken: cancellation);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && DateTime.UtcNow < giveUp)
            {
                logger.LogDebug("Coordinator {Address} not reachable yet: {Detail}", settings.Coordinator, e.Status.Detail);
                await Task.Delay(250, cancellation);
            }
            catch (RpcException e)
            {
                throw new ClusterException($"worker '{settings.WorkerId}' could not join {settings.Coordinator}: {e.Status.StatusCode}: {e.Status.Detail}", e);
            }
        }
    }

    /// <summary>FNV-1a over the training labels: equal data on every worker, cheaply checked.</summary>
    public static ulong LabelsHash(Dataset data)
    {
        ulong h = 14695981039346656037UL;
        foreach (byte b in data.Labels) h = (h ^ b) * 1099511628211UL;
        return h;
    }
}
