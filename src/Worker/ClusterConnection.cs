using System.Net.Http;
using System.Text.Json;
using BnDist.Core.Backends;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Collectives.SharedMemory;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;
using BnDist.Protos;
using BnDist.Protos.V1;
using Google.Protobuf;
using Grpc.Core;
using ModelLayout = BnDist.Core.Models.ModelLayout;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace BnDist.Worker;

/// <summary>
/// A worker's membership of a run: the channel to the coordinator, the join (rank, world,
/// configuration, initial state) and the one Collective stream. <see cref="WorkerRunner"/>
/// trains over it; benchmarks drive its <see cref="Collective"/> directly.
/// </summary>
public sealed class ClusterConnection : IAsyncDisposable
{
    private readonly GrpcChannel _channel;
    private readonly Cluster.ClusterClient _client;
    private readonly Metadata _headers;

    private readonly TimeSpan _operationTimeout;

    private ClusterConnection(GrpcChannel channel, Cluster.ClusterClient client, Metadata headers, JoinReply join, TrainingConfig config,
        WorkerCollective collective)
    {
        (_channel, _client, _headers, Config, Collective) = (channel, client, headers, config, collective);
        Membership = new RunMembership(join.RunId, join.Rank, join.WorldSize, join.StartStep, GradientRing: join.RingEndpoints.Count > 0,
            SharedMemoryGradients: collective.SharedMemoryGradients);
        _operationTimeout = TimeSpan.FromMilliseconds(join.OperationTimeoutMs);
    }

    /// <summary>What the join decided for this worker (the generated reply stays inside this class).</summary>
    public RunMembership Membership { get; }

    public TrainingConfig Config { get; }

    public WorkerCollective Collective { get; }

    /// <summary>Joins the run at <see cref="WorkerSettings.Coordinator"/> (retrying while it is not up yet) and opens the stream.</summary>
    public static Task<ClusterConnection> OpenAsync(WorkerSettings settings, Dataset train, Dataset test, IBackend backend,
        ILogger logger, CancellationToken cancellation) =>
        OpenAsync(settings, Fingerprint(train.Count, test.Count, train.Labels), backend, logger, cancellation);

    /// <summary>
    /// As the other overload, with the splits as read, before normalization: a worker joins before
    /// it knows the run's configuration, which says how to normalize them.
    /// </summary>
    public static Task<ClusterConnection> OpenAsync(WorkerSettings settings, DataSplit train, DataSplit test, IBackend backend,
        ILogger logger, CancellationToken cancellation) =>
        OpenAsync(settings, Fingerprint(train.Count, test.Count, train.Labels), backend, logger, cancellation);

    private static DatasetFingerprint Fingerprint(int trainCount, int testCount, ReadOnlySpan<int> trainLabels) =>
        new() { TrainCount = trainCount, TestCount = testCount, TrainLabelsHash = LabelsHash(trainLabels) };

    private static async Task<ClusterConnection> OpenAsync(WorkerSettings settings, DatasetFingerprint data, IBackend backend,
        ILogger logger, CancellationToken cancellation)
    {
        var channel = GrpcChannel.ForAddress(settings.Coordinator, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = WireLimits.MaxMessageBytes,
            MaxSendMessageSize = WireLimits.MaxMessageBytes,
            HttpHandler = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                ConnectTimeout = TimeSpan.FromSeconds(10),
                InitialHttp2StreamWindowSize = WireLimits.Http2WindowBytes,
            },
        });
        try
        {
            var client = new Cluster.ClusterClient(channel);
            var headers = new Metadata();
            if (settings.Token is not null) headers.Add(RunToken.Header, RunToken.Scheme + settings.Token);
            // The ring listener is open before the join, so a neighbour can connect as soon as it knows the world.
            using var listener = TcpRing.Listen(settings.AdvertisedHost(), out string endpoint);
            var join = await JoinAsync(settings, client, headers, data, backend.Name, endpoint, logger, cancellation);
            var config = JsonSerializer.Deserialize<TrainingConfig>(join.ConfigJson)
                ?? throw new ClusterException("the coordinator sent no run configuration");
            var timeout = TimeSpan.FromMilliseconds(join.OperationTimeoutMs);
            var collective = new WorkerCollective(client, headers, join.RunId, join.Rank, join.WorldSize, timeout, backend, cancellation,
                settings.Coordinator) { NextLearningRate = join.LearningRate };
            try
            {
                await AttachHostGroupAsync(join, collective, timeout, cancellation);
            }
            catch
            {
                await collective.DisposeAsync();
                throw;
            }
            if (join.RingEndpoints.Count > 0)
            {
                try
                {
                    // A run on several hosts rings the hosts' leaders, numbered by host.
                    var leaders = join.HostGroup is { Hosts: > 1 } hosts ? hosts : null;
                    if (leaders is not null && leaders.Leaders.Count != join.RingEndpoints.Count)
                        throw new ClusterException($"the coordinator sent rank {join.Rank} a ring of {join.RingEndpoints.Count} endpoints for {leaders.Leaders.Count} host leaders");
                    collective.Ring = await TcpRing.ConnectAsync(listener, leaders?.Host ?? join.Rank, join.RingEndpoints, join.RunId, settings.Token,
                        timeout, cancellation, leaders is null ? null : [.. leaders.Leaders]);
                }
                catch (ClusterException e)
                {
                    // A neighbour that never came: the coordinator may know why (it died, or never opened its stream).
                    var reason = await Task.Run(() => collective.VerdictFor(e), CancellationToken.None);
                    await collective.DisposeAsync();
                    throw reason;
                }
                catch
                {
                    await collective.DisposeAsync();
                    throw;
                }
            }
            return new ClusterConnection(channel, client, headers, join, config, collective);
        }
        catch
        {
            channel.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The host's shared-memory segment, when the coordinator put this rank in a host group: every
    /// rank of the host maps it (within the operation timeout) before the first step.
    /// </summary>
    private static async Task AttachHostGroupAsync(JoinReply join, WorkerCollective collective, TimeSpan timeout, CancellationToken cancellation)
    {
        if (join.HostGroup is not { } group) return;
        bool hierarchical = group.Hosts > 1;
        if (group.Ranks.Count < 2)
        {
            collective.UseSharedMemory(null, hierarchical, gradients: false);
            return;
        }
        int local = group.Ranks.IndexOf(join.Rank);
        if (local < 0 || string.IsNullOrEmpty(group.Segment) || group.Segment.Contains('/') || group.Segment.Contains(".."))
            throw new ClusterException($"the coordinator sent rank {join.Rank} a malformed host group ({group})");
        string path = Path.Combine(SharedMemoryGroup.DefaultDirectory, group.Segment);
        try
        {
            var shared = await Task.Run(() => SharedMemoryGroup.Attach(path, local, [.. group.Ranks], timeout, cancellation), cancellation);
            collective.UseSharedMemory(shared, hierarchical, group.Gradients);
        }
        catch (CollectiveException e)
        {
            // A rank of the host that never came: the coordinator may know why (it died before its stream opened).
            throw await Task.Run(() => collective.VerdictFor(new ClusterException(e.Message, e)), CancellationToken.None);
        }
    }

    /// <summary>
    /// The model rendezvous: describes <paramref name="network"/> to the coordinator (rank 0 also
    /// sends its freshly built state), waits until every rank has, and loads the initial state
    /// the coordinator answers with into the network and the optimizer, so every rank starts
    /// bit-identical. A model that differs from rank 0's ends the run with the difference named.
    /// </summary>
    public async Task PrepareAsync(Network network, Sgd optimizer, IBackend backend, CancellationToken cancellation)
    {
        var layout = ModelLayout.Of(network);
        var request = new PrepareRequest { RunId = Membership.RunId, Rank = Membership.Rank, Model = LayoutMessage(layout) };
        if (Membership.Rank == 0)
            request.State = UnsafeByteOperations.UnsafeWrap(Checkpoint.ToBytes(backend, network, optimizer, Membership.StartStep, Config));
        // The coordinator names the ranks that do not prepare within the operation timeout of the
        // first; this deadline only covers a coordinator that stopped answering altogether.
        var deadline = DateTime.UtcNow + _operationTimeout + TimeSpan.FromSeconds(5);
        PrepareReply reply;
        try
        {
            reply = await _client.PrepareAsync(request, _headers, deadline, cancellation);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Aborted)
        {
            throw new ClusterException($"the coordinator aborted the run: {e.Status.Detail}", e);
        }
        catch (RpcException e) when (!cancellation.IsCancellationRequested)
        {
            throw new ClusterException($"rank {Membership.Rank}: preparing the model with the coordinator failed: {e.Status.StatusCode}: {e.Status.Detail}", e);
        }
        Checkpoint.Load(reply.InitialState.ToByteArray(), "the initial state from the coordinator", backend, network, optimizer);
    }

    /// <summary>A layout as it crosses the wire.</summary>
    public static Protos.V1.ModelLayout LayoutMessage(ModelLayout layout)
    {
        var wire = new Protos.V1.ModelLayout { Architecture = layout.Architecture, Normalization = layout.Normalization };
        foreach (var t in layout.Tensors)
            wire.Tensors.Add(new Protos.V1.TensorSpec { Name = t.Name, Dtype = t.DType.ToSpecString(), Shape = { t.Shape }, Parameter = t.IsParameter });
        foreach (var b in layout.BatchNorms)
            wire.BatchNorms.Add(new Protos.V1.BatchNormSpec { Layer = b.Layer, Name = b.Name, Channels = b.Channels, Cumulative = b.Momentum is null, Momentum = b.Momentum ?? 0 });
        return wire;
    }

    public async ValueTask DisposeAsync()
    {
        await Collective.DisposeAsync();
        _channel.Dispose();
    }

    private static async Task<JoinReply> JoinAsync(WorkerSettings settings, Cluster.ClusterClient client, Metadata headers, DatasetFingerprint data,
        string device, string dataEndpoint, ILogger logger, CancellationToken cancellation)
    {
        var request = new JoinRequest
        {
            WorkerId = settings.WorkerId,
            Device = device,
            ProtocolVersion = WireLimits.ProtocolVersion,
            Dataset = data,
            DataEndpoint = dataEndpoint,
            Host = settings.HostIdentity(),
        };
        // The coordinator may not be up yet (a cluster starting together): retry briefly while
        // unreachable. The whole join, the wait for the world included, has a deadline: the
        // coordinator's own join timeout normally ends it first, with its reason.
        var timeout = TimeSpan.FromSeconds(settings.JoinTimeoutSeconds);
        var deadline = DateTime.UtcNow + timeout;
        var giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(Math.Min(30, settings.JoinTimeoutSeconds));
        while (true)
        {
            try
            {
                return await client.JoinAsync(request, headers, deadline: deadline, cancellationToken: cancellation);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && DateTime.UtcNow < giveUp)
            {
                logger.LogDebug("Coordinator {Address} not reachable yet: {Detail}", settings.Coordinator, e.Status.Detail);
                await Task.Delay(250, cancellation);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.DeadlineExceeded && DateTime.UtcNow >= deadline - TimeSpan.FromSeconds(1))
            {
                throw new ClusterException($"worker '{settings.WorkerId}' could not join {settings.Coordinator} within {timeout.TotalSeconds:0.#} s " +
                                           "(the join timeout): the run's world did not complete, or the coordinator did not answer", e);
            }
            catch (RpcException e)
            {
                throw new ClusterException($"worker '{settings.WorkerId}' could not join {settings.Coordinator}: {e.Status.StatusCode}: {e.Status.Detail}", e);
            }
        }
    }

    /// <summary>FNV-1a over the training labels: equal data on every worker, cheaply checked.</summary>
    public static ulong LabelsHash(Dataset data) => LabelsHash(data.Labels);

    /// <summary>FNV-1a over labels, one step per label (labels below 256 hash as the bytes they were in IDX files).</summary>
    public static ulong LabelsHash(ReadOnlySpan<int> labels)
    {
        ulong h = 14695981039346656037UL;
        foreach (int label in labels) h = (h ^ (uint)label) * 1099511628211UL;
        return h;
    }
}

/// <summary>A worker's place in the run: its id, rank, the world size, the first step, and whether gradients go around the TCP ring.</summary>
/// <remarks><see cref="SharedMemoryGradients"/>: gradients are summed in the host's shared memory (every rank on one host).</remarks>
public sealed record RunMembership(string RunId, int Rank, int WorldSize, long StartStep, bool GradientRing, bool SharedMemoryGradients = false);
