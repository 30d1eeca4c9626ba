using BnDist.Core.Data;
using BnDist.Core.Training;
using BnDist.Protos;
using BnDist.Protos.V1;
using BnDist.Testing;
using BnDist.Worker;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace BnDist.Integration.Tests;

/// <summary>
/// A live client that joins as rank 1 and sends what no correct worker sends, over real gRPC:
/// the run ends everywhere within the deadline, and every process is told which rank sent what.
/// </summary>
public sealed class MalformedMessageTests
{
    [Theory]
    [InlineData("no header", "rank 1 sent a malformed operation header")]
    [InlineData("negative length", "rank 1 sent a malformed operation header")]
    [InlineData("fewer values than its header", "rank 1 sent 5 values for step 0 BatchNormStats layer 0")]
    [InlineData("another run id", "rank 1 sent a malformed operation header")]
    [InlineData("an unknown kind", "rank 1 sent a malformed operation header")]
    [InlineData("float64 values for gradients", "rank 1 sent a malformed chunk of step 0 Gradients")] // no float32 bytes in it
    [InlineData("a chunk that is not whole floats", "rank 1 sent a malformed chunk of step 0 Gradients")]
    [InlineData("an empty message", "rank 1 sent a malformed message (None)")]
    // A hello claiming another rank is refused; rank 1 then never opens its stream (nor contributes),
    // and whichever deadline fires first names it: both expire 10 s after nearly the same moment.
    [InlineData("a hello for another rank", "rank 1 (worker-999) joined but did not open its collective stream | rank(s) 1 did not contribute")]
    public async Task A_malformed_message_from_a_live_client_ends_the_run_on_every_process_naming_the_rank(string malformation, string reason)
    {
        var config = new TrainingConfig { Model = "mlp-paper", BatchSize = 8, Steps = 3, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 1,
            new LocalClusterOptions { ExternalWorkers = 1, OperationTimeout = TimeSpan.FromSeconds(10) });

        using var rank1 = await ExternalRank.JoinAsync(cluster);
        var (client, headers, join) = (rank1.Client, rank1.Headers, rank1.Join);
        Assert.Equal(1, join.Rank);
        // The model rendezvous, as a correct rank 1 does it (rank 0 waits in it for us).
        await client.PrepareAsync(new PrepareRequest { RunId = join.RunId, Rank = 1, Model = MlpPaperLayout() }, headers);

        using var call = client.Collective(headers);
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new StreamHello { RunId = join.RunId, Rank = malformation == "a hello for another rank" ? 7 : 1 } });
        var header = new Protos.V1.OperationHeader
        {
            RunId = join.RunId, Step = 0, Sequence = 0, Kind = OperationKind.BatchNormStats, Layer = 0, Length = 2 * 100 + 1,
        };
        WorkerMessage? bad = malformation switch
        {
            "no header" => new WorkerMessage { Contribution = new Contribution() },
            "negative length" => Contribution(Edit(header, h => h.Length = -3), 0),
            "fewer values than its header" => Contribution(header, 5),
            "another run id" => Contribution(Edit(header, h => h.RunId = "not-this-run"), 201),
            "an unknown kind" => Contribution(Edit(header, h => h.Kind = (OperationKind)99), 201),
            "float64 values for gradients" => Contribution(Edit(header, h => (h.Kind, h.Layer) = (OperationKind.Gradients, -1)), 201),
            "a chunk that is not whole floats" => new WorkerMessage
            {
                Contribution = new Contribution { Header = Edit(header, h => (h.Kind, h.Layer, h.Length) = (OperationKind.Gradients, -1, 4)), Floats = ByteString.CopyFrom(1, 2, 3) },
            },
            "an empty message" => new WorkerMessage(),
            _ => null,
        };
        var sent = DateTime.UtcNow;
        if (bad is not null) await call.RequestStream.WriteAsync(bad);

        var outcome = await cluster.Run.Outcome.WaitAsync(TimeSpan.FromSeconds(20));
        var errors = await cluster.WorkerErrorsAsync(TimeSpan.FromSeconds(20));
        Assert.False(outcome.Succeeded);
        AssertGives(reason, outcome.Error);
        // The honest worker (rank 0) ends with the coordinator's reason, not a hang or a bare disconnect.
        var survivor = Assert.IsType<ClusterException>(errors[0]);
        AssertGives(reason, survivor.Message);
        // Refused on arrival, not merely timed out (the deadline is 10 s).
        var took = DateTime.UtcNow - sent;
        Assert.True(bad is null || took < TimeSpan.FromSeconds(8), $"a malformed message took {took} to end the run");
        Assert.Equal(0, cluster.Run.CommittedSteps);
    }

    /// <summary><paramref name="text"/> contains the reason, or one of the alternatives separated by " | ".</summary>
    private static void AssertGives(string reason, string? text) =>
        Assert.True(reason.Split(" | ").Any(r => text?.Contains(r, StringComparison.Ordinal) == true), $"expected \"{reason}\" in: {text}");

    private static Protos.V1.ModelLayout MlpPaperLayout()
    {
        using var backend = new Core.Backends.Cpu.CpuBackend(1);
        var network = Core.Models.ModelFactory.Create("mlp-paper", backend, Core.Collectives.SingleProcessCollective.Instance, 0,
            new Core.Models.NormalizationOptions());
        return ClusterConnection.LayoutMessage(Core.Models.ModelLayout.Of(network));
    }

    private static Protos.V1.OperationHeader Edit(Protos.V1.OperationHeader header, Action<Protos.V1.OperationHeader> edit)
    {
        var copy = header.Clone();
        edit(copy);
        return copy;
    }

    private static WorkerMessage Contribution(Protos.V1.OperationHeader header, int values)
    {
        var c = new Contribution { Header = header };
        for (int i = 0; i < values; i++) c.Values.Add(i);
        return new WorkerMessage { Contribution = c };
    }
}
