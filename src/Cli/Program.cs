using System.Runtime.InteropServices;
using BnDist.Cli.Commands;

namespace BnDist.Cli;

public static class Program
{
    private const string Usage = """
        usage: bndist <command> [options]

        commands:
          train       train in this process (bndist train --help)
          launch      a local cluster: coordinator + K worker processes (bndist launch --help)
          coordinator serve a run to workers on other machines
          worker      join a coordinator and train
          eval        test accuracy of a checkpoint
          bench step  median time of one training step
          bench collective
                      latency and bandwidth of the all-reduce, K worker processes on loopback
        """;

    public static int Main(string[] args)
    {
        // Socket completions run on the I/O thread rather than being queued to the thread pool
        // (read by the runtime when it first opens a socket, so before anything else): one
        // thread wake-up less per message on the collective stream. BNDIST_INLINE_IO=0 turns it off.
        if (Environment.GetEnvironmentVariable("BNDIST_INLINE_IO") != "0" &&
            Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
            Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
        // Ctrl-C (SIGINT) and SIGTERM (kill, docker stop, a CI time limit) both cancel the
        // command: train stops after its current step, launch stops every process, a
        // coordinator ends its run for all workers with the reason. A command that was
        // interrupted returns 130; the process then exits with 128 + the number of the
        // signal, as a shell reports it.
        using var cancellation = new CancellationTokenSource();
        int signal = 0;
        void Interrupt(int number)
        {
            Interlocked.CompareExchange(ref signal, number, 0);
            cancellation.Cancel();
        }
        System.Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Interrupt(2);
        };
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            Interrupt(15);
        });
        int code = Dispatch(args, cancellation.Token);
        return code == InterruptedExitCode && signal != 0 ? 128 + signal : code;
    }

    /// <summary>What a command returns when a signal interrupted it.</summary>
    public const int InterruptedExitCode = 130;

    private static int Dispatch(string[] args, CancellationToken cancellation)
    {
        try
        {
            if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
            {
                System.Console.WriteLine(Usage);
                return args.Length == 0 ? 2 : 0;
            }
            return args[0] switch
            {
                "train" => TrainCommand.Run(new ArgReader("train", args[1..]), cancellation),
                "eval" => EvalCommand.Run(new ArgReader("eval", args[1..])),
                "launch" => LaunchCommand.Run(new ArgReader("launch", args[1..]), cancellation),
                "coordinator" => CoordinatorCommand.Run(new ArgReader("coordinator", args[1..]), cancellation),
                "worker" => WorkerCommand.Run(new ArgReader("worker", args[1..])),
                "bench" => BenchCommand.Run(args[1..], cancellation),
                _ => throw new UsageException($"unknown command '{args[0]}' (expected train, launch, coordinator, worker, eval, bench)"),
            };
        }
        catch (UsageException e)
        {
            System.Console.Error.WriteLine($"bndist: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException or ArgumentException or IOException)
        {
            System.Console.Error.WriteLine($"bndist: {e.Message}");
            return 1;
        }
    }
}
