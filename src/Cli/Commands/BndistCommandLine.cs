using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;

namespace BnDist.Cli.Commands;

/// <summary>
/// The command line of bndist (System.CommandLine): every command declares the options it
/// honours, once, and help is generated from those declarations. A mistake on the command line
/// is one line on stderr, "bndist &lt;command&gt;: &lt;what is wrong&gt;", and exit code 2; --help prints
/// the command's help and exits 0. Signals are Program's: System.CommandLine's own handling of
/// Ctrl-C and SIGTERM is off (ProcessTerminationTimeout = null), and the commands get
/// Program's cancellation token.
/// </summary>
public static partial class BndistCommandLine
{
    public const int UsageExitCode = 2;

    public static RootCommand Build(CancellationToken cancellation) => new("bndist: data-parallel training with synchronized batch norm")
    {
        TrainCommand.Create(cancellation),
        LaunchCommand.Create(cancellation),
        CoordinatorCommand.Create(cancellation),
        WorkerCommand.Create(),
        EvalCommand.Create(),
        BenchCommand.Create(cancellation),
    };

    private static readonly ParserConfiguration Parsing = new() { ResponseFileTokenReplacer = null };

    private static InvocationConfiguration Invocation => new() { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };

    public static int Run(string[] args, CancellationToken cancellation)
    {
        var root = Build(cancellation);
        if (args.Length == 0)
        {
            root.Parse(["--help"], Parsing).Invoke(Invocation);
            return UsageExitCode;
        }
        if (args is ["help"]) args = ["--help"];
        var result = root.Parse(args, Parsing);
        string command = CommandPath(result.CommandResult);
        if (result.Action is HelpAction) return result.Invoke(Invocation);
        if (result.Errors.Count > 0)
        {
            System.Console.Error.WriteLine($"{command}: {Describe(result)}");
            return UsageExitCode;
        }
        try
        {
            return result.Invoke(Invocation);
        }
        catch (UsageException e)
        {
            System.Console.Error.WriteLine($"{command}: {OneLine(e.Message)}");
            return UsageExitCode;
        }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException or ArgumentException or IOException)
        {
            System.Console.Error.WriteLine($"{command}: {OneLine(e.Message)}");
            return 1;
        }
    }

    /// <summary>"bndist bench collective" for that command's result.</summary>
    private static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is not null; r = r.Parent)
            if (r is CommandResult c) names.Insert(0, c.Command is RootCommand ? "bndist" : c.Command.Name);
        return string.Join(' ', names);
    }

    /// <summary>The first error, in words a user of this program expects.</summary>
    private static string Describe(ParseResult result)
    {
        var command = result.CommandResult.Command;
        string[] subcommands = [.. command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name)];
        var unmatched = result.UnmatchedTokens;
        var error = result.Errors[0];
        if (unmatched.Count > 0 && (error.Message.StartsWith("Unrecognized command or argument", StringComparison.Ordinal) ||
                                    error.Message.StartsWith("Required command was not provided", StringComparison.Ordinal)))
        {
            string token = unmatched[0];
            if (token.StartsWith('-')) return $"unknown option {token} (see {CommandPath(result.CommandResult)} --help)";
            return subcommands.Length > 0
                ? $"unknown command '{token}' (expected {string.Join(", ", subcommands)})"
                : $"unexpected argument '{token}' (options look like --name value)";
        }
        if (error.Message.StartsWith("Required command was not provided", StringComparison.Ordinal))
            return $"expected a command: {string.Join(", ", subcommands)}";
        if (SingleArgument().Match(error.Message) is { Success: true } twice) return $"{twice.Groups[1].Value} given {twice.Groups[2].Value} times";
        if (RequiredOption().Match(error.Message) is { Success: true } required) return $"{required.Groups[1].Value} is required";
        return OneLine(error.Message);
    }

    [GeneratedRegex(@"^Option '(--[\w-]+)' expects a single argument but (\d+) were provided")]
    private static partial Regex SingleArgument();

    [GeneratedRegex(@"^Option '(--[\w-]+)' is required")]
    private static partial Regex RequiredOption();

    private static string OneLine(string message) =>
        string.Join(' ', message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
}
