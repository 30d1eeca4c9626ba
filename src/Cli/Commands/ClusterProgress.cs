using System.Globalization;
using BnDist.Cli.Console;
using BnDist.Coordinator;

namespace BnDist.Cli.Commands;

/// <summary>Shows a run's progress (step, loss, per-worker throughput) and where the time of a step went.</summary>
internal static class ClusterProgress
{
    public static void Attach(RunCoordinator run, bool quiet)
    {
        var bar = new ProgressBar(!quiet);
        run.WorldComplete += world => bar.Line(
            $"world of {world.Size}: " + string.Join(", ", world.Members.Select((m, r) => $"rank {r} = {m.WorkerId} ({m.Device})")));
        bool printedShards = false;
        run.StepCommitted += s =>
        {
            if (!printedShards)
            {
                printedShards = true;
                bar.Line($"global batch {run.Settings.Training.BatchSize}: shards [{string.Join(", ", s.LocalBatches)}]");
            }
            string perWorker = string.Join(" ", s.LocalBatches.Select((n, r) =>
                string.Create(CultureInfo.InvariantCulture, $"r{r}:{n / Math.Max(1e-9, s.Timings[r].ComputeSeconds):F0}")));
            bar.Update(s.Step + 1, s.TotalSteps, string.Create(CultureInfo.InvariantCulture,
                $"epoch {s.Epoch + 1} loss {s.Loss:F4} lr {s.LearningRate:G4} {s.SamplesPerSecond:F0} samples/s (compute/worker {perWorker})"));
        };
        run.Evaluated += (step, loss, accuracy) =>
            bar.Line(string.Create(CultureInfo.InvariantCulture, $"step {step}: test loss {loss:F4}, test accuracy {accuracy:F4}"));
    }

    /// <summary>Mean milliseconds per step of each part, per rank.</summary>
    public static void PrintBreakdown(RunCoordinator run)
    {
        var t = run.MeanStepTimings();
        System.Console.WriteLine("time per step (ms)   compute   BN stats exchange   gradient exchange   waiting for slowest");
        for (int r = 0; r < t.GetLength(0); r++)
            System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  rank {r,-14} {t[r, 0] * 1e3,9:F2} {t[r, 1] * 1e3,19:F2} {t[r, 2] * 1e3,19:F2} {t[r, 3] * 1e3,21:F2}"));
        System.Console.WriteLine("  (BN and gradient exchange include the wait; the last column is the part of them spent waiting)");
        var shares = Enumerable.Range(0, t.GetLength(0)).Select(r =>
        {
            double total = t[r, 0] + t[r, 1] + t[r, 2];
            return total > 0 ? (t[r, 1] + t[r, 2]) / total : 0;
        }).ToList();
        if (shares.Count > 0)
            System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"communication share of a step: {string.Join(", ", shares.Select((s, r) => $"rank {r} {100 * s:F1}%"))} (mean {100 * shares.Average():F1}%)"));
    }
}
