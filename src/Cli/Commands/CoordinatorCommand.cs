using System.CommandLine;
using BnDist.Coordinator;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace BnDist.Cli.Commands;

/// <summary>
/// <c>bndist coordinator --port P --workers K [run options]</c>: serve one run to workers on
/// other machines. The settings bind from the "Coordinator" section of appsettings.json and
/// BNDIST__COORDINATOR__… environment variables; the options given on the command line win.
/// The workers hold the data and the devices, so this command has no --data, --device or --threads.
/// </summary>
public static class CoordinatorCommand
{
    public static Command Create(CancellationToken cancellation)
    {
        var setup = new ClusterSetup("coordinator", defaultPort: 29500, knownModel: false);
        var command = new Command("coordinator", "serve a run to workers on other machines");
        setup.AddTo(command);
        command.SetAction(r => Run(r, setup, cancellation));
        return command;
    }

    private static int Run(ParseResult parse, ClusterSetup setup, CancellationToken cancellation)
    {
        var settings = setup.Settings(parse, new CoordinatorSettings());
        var app = CoordinatorServices.Build(settings, l => l.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true));
        var run = app.Services.GetRequiredService<RunCoordinator>();
        if (parse.GetValue(setup.Files.SaveInit) is { } saveInit) ClusterSetup.SaveInitialState(saveInit, run);
        ClusterProgress.Attach(run, parse.GetValue(setup.Files.Quiet));
        using var metrics = parse.GetValue(setup.Files.MetricsOut) is { } metricsOut ? ClusterSetup.WriteMetrics(metricsOut, run) : null;
        var c = settings.Training;
        System.Console.WriteLine($"bndist coordinator: run {run.RunId} on {settings.Host}:{settings.Port}, {c.Model}/{c.Norm}, " +
                                 $"global batch {c.BatchSize}, waiting for {settings.Workers} workers");
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
