using BnDist.Core.Collectives;
using BnDist.Protos;
using BnDist.Protos.V1;
using Google.Protobuf;

namespace BnDist.Worker;

/// <summary>What the coordinator answered to a step's commit.</summary>
public readonly record struct CommitOutcome(double NextLearningRate, bool UploadState);

/// <summary>
/// The control side of the stream, apart from the reductions: the step's commit (its metrics and
/// timing, rank 0's BN statistics of a one-host run; back come the summed metrics, the next
/// learning rate and whether to upload), and rank 0's checkpoint upload.
/// </summary>
public sealed class ControlChannel(CoordinatorStream stream)
{
    /// <summary>Commits <paramref name="step"/>: <paramref name="metrics"/> are replaced by their sum over the ranks.</summary>
    public CommitOutcome Commit(long step, Span<double> metrics, double computeSeconds, double statsSeconds, double gradientSeconds,
        IReadOnlyList<(int Layer, double[] Values)> statistics, int statisticsCount)
    {
        var header = stream.Header(stream.NextSequence(), step, CollectiveKind.Metrics, -1, metrics.Length);
        var commit = new StepCommit
        {
            Header = header,
            Timing = new Protos.V1.StepTiming { ComputeS = computeSeconds, StatsExchangeS = statsSeconds, GradientExchangeS = gradientSeconds },
        };
        foreach (double v in metrics) commit.Metrics.Add(v);
        for (int i = 0; i < statisticsCount; i++)
        {
            var layer = new LayerStatistics { Layer = statistics[i].Layer };
            layer.Values.Add(statistics[i].Values);
            commit.Statistics.Add(layer);
        }
        stream.Send(new WorkerMessage { Commit = commit });
        var reply = stream.Await(header, CoordinatorMessage.BodyOneofCase.Committed).Committed;
        for (int i = 0; i < metrics.Length; i++) metrics[i] = reply.Metrics[i];
        return new CommitOutcome(reply.NextLearningRate, reply.UploadState);
    }

    /// <summary>Rank 0's parameters and optimizer state after <paramref name="steps"/> steps, in chunks.</summary>
    public void Upload(long steps, byte[] image)
    {
        for (int offset = 0; offset < image.Length || offset == 0; offset += WireLimits.StateChunkBytes)
        {
            int count = Math.Min(WireLimits.StateChunkBytes, image.Length - offset);
            bool last = offset + count >= image.Length;
            stream.Send(new WorkerMessage { State = new StateChunk { Step = steps, Data = ByteString.CopyFrom(image, offset, count), Last = last } });
            if (last) break;
        }
    }
}
