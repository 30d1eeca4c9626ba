using BnDist.Core.Data;
using BnDist.Protos;
using BnDist.Protos.V1;
using BnDist.Testing;
using BnDist.Worker;
using Grpc.Core;
using Grpc.Net.Client;

namespace BnDist.Integration.Tests;

/// <summary>
/// A rank the test plays itself (<see cref="LocalClusterOptions.ExternalWorkers"/>): a raw gRPC
/// client that joins like a worker, so it can then send what no correct worker sends.
/// </summary>
internal sealed class ExternalRank : IDisposable
{
    private readonly GrpcChannel _channel;

    private ExternalRank(GrpcChannel channel, Cluster.ClusterClient client, Metadata headers, JoinReply join) =>
        (_channel, Client, Headers, Join) = (channel, client, headers, join);

    public Cluster.ClusterClient Client { get; }

    public Metadata Headers { get; }

    public JoinReply Join { get; }

    /// <summary>Joins with the embedded data's fingerprint; the id orders it among the ranks (worker-999: after the harness's workers).</summary>
    public static async Task<ExternalRank> JoinAsync(LocalCluster cluster, string workerId = "worker-999")
    {
        var channel = GrpcChannel.ForAddress(cluster.Address);
        var client = new Cluster.ClusterClient(channel);
        var headers = new Metadata { { RunToken.Header, RunToken.Scheme + cluster.Token } };
        var train = Dataset.Load(Dataset.DefaultDirectory(), train: true);
        var test = Dataset.Load(Dataset.DefaultDirectory(), train: false);
        var join = await client.JoinAsync(new JoinRequest
        {
            WorkerId = workerId,
            Device = "test client",
            ProtocolVersion = WireLimits.ProtocolVersion,
            Dataset = new DatasetFingerprint { TrainCount = train.Count, TestCount = test.Count, TrainLabelsHash = ClusterConnection.LabelsHash(train) },
        }, headers);
        return new ExternalRank(channel, client, headers, join);
    }

    public void Dispose() => _channel.Dispose();
}
