namespace BnDist.Cli.Commands;

/// <summary>A command-line mistake: printed as one line, "bndist &lt;command&gt;: &lt;message&gt;", exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
