using BnDist.Coordinator;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace BnDist.Cli.Commands;

/// <summary><c>bndist coordinator --port P --workers K [train options]</c>: serve one run to workers on other machines.</summary>
public static class CoordinatorCommand
{
    public static int Run(ArgReader args, CancellationToken cancellation)
    {
        if (args.Help)
        {
            System.Console.WriteLine("usage: bndist coordinator --port P --workers K [--host 0.0.0.0] [options]\n\n" + ClusterOptions.Help + TrainOptions.Help);
            return 0;
        }
        var train = TrainOptions.Read(args);
        var settings = ClusterOptions.Read(args, "coordinator", train, defaultPort: 29500);
        args.Finish();
        var app = CoordinatorServices.Build(settings, l => l.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true));
        var run = app.Services.GetRequiredService<RunCoordinator>();
        ClusterProgress.Attach(run, train.Quiet);
        System.Console.WriteLine($"bndist coordinator: run {run.RunId} on {settings.Host}:{settings.Port}, waiting for {settings.Workers} workers");
        app.StartAsync(cancellation).GetAwaiter().GetResult();
        // Interrupted: end the run for every worker at once, with the reason, rather than let
        // the host wait out its shutdown timeout for streams the workers keep open.
        using (cancellation.Register(() => run.Abort("the coordinator was interrupted")))
            app.WaitForShutdownAsync(CancellationToken.None).GetAwaiter().GetResult();
        var outcome = run.Outcome.IsCompleted ? run.Outcome.Result : null;
        if (outcome is null || cancellation.IsCancellationRequested)
        {
            System.Console.Error.WriteLine("bndist coordinator: interrupted");
            return Program.InterruptedExitCode;
        }
        ClusterProgress.PrintBreakdown(run);
        System.Console.WriteLine(outcome.Succeeded
            ? $"done: {outcome.CommittedSteps} steps; {(double.IsNaN(outcome.TestAccuracy) ? "not evaluated" : $"test accuracy {outcome.TestAccuracy:F4}")}" + (outcome.Checkpoint is null ? "" : $"; saved {outcome.Checkpoint}")
            : $"failed: {outcome.Error}");
        return outcome.Succeeded ? 0 : 1;
    }
}
