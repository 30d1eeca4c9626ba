using System.Runtime.InteropServices;
using BnDist.Cli.Commands;

namespace BnDist.Cli;

public static class Program
{
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
        // signal, as a shell reports it. (System.CommandLine's own signal handling is off.)
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
        int code = BndistCommandLine.Run(args, cancellation.Token);
        return code == InterruptedExitCode && signal != 0 ? 128 + signal : code;
    }

    /// <summary>What a command returns when a signal interrupted it.</summary>
    public const int InterruptedExitCode = 130;
}
