namespace BnDist.Cli.Tests;

/// <summary>
/// The settings of coordinator and worker come from appsettings.json in the working directory,
/// then BNDIST__COORDINATOR__… / BNDIST__WORKER__… environment variables, then the command line,
/// each overriding the one before.
/// </summary>
public sealed class ConfigurationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bndist-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    /// <summary>The coordinator's "waiting for K workers" line (it then waits for workers: the test stops it).</summary>
    private string? Banner(Dictionary<string, string>? environment, params string[] args) =>
        BndistProcess.FirstLineContaining(["coordinator", "--port", "0", .. args], "waiting for", Limit, environment, _dir);

    [Fact]
    public void An_environment_variable_sets_the_coordinator_workers_when_the_command_line_does_not()
    {
        var environment = new Dictionary<string, string> { ["BNDIST__COORDINATOR__WORKERS"] = "3" };
        Assert.EndsWith("waiting for 3 workers", Banner(environment));
        Assert.EndsWith("waiting for 4 workers", Banner(environment, "--workers", "4")); // the command line wins
        Assert.EndsWith("waiting for 2 workers", Banner(null));                          // the default
    }

    [Fact]
    public void Appsettings_json_in_the_working_directory_sets_the_coordinator_and_its_run_under_the_environment()
    {
        File.WriteAllText(Path.Combine(_dir, "appsettings.json"),
            """{ "Coordinator": { "Workers": 5, "Training": { "Model": "mlp-paper", "BatchSize": 32 } } }""");
        Assert.EndsWith("mlp-paper/bn, global batch 32, waiting for 5 workers", Banner(null));

        var environment = new Dictionary<string, string> { ["BNDIST__COORDINATOR__WORKERS"] = "6", ["BNDIST__COORDINATOR__TRAINING__BATCHSIZE"] = "64" };
        Assert.EndsWith("mlp-paper/bn, global batch 64, waiting for 6 workers", Banner(environment));
        Assert.EndsWith("mlp-paper/bn, global batch 16, waiting for 6 workers", Banner(environment, "--batch-size", "16"));
    }

    [Fact]
    public void An_environment_variable_sets_the_worker_coordinator_and_the_command_line_wins()
    {
        // An address that is not http(s) fails validation naming the value the worker resolved.
        var environment = new Dictionary<string, string> { ["BNDIST__WORKER__COORDINATOR"] = "ftp://from-the-environment" };
        var (code, stdout, stderr) = BndistProcess.Run(["worker"], Limit, environment, _dir);
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Equal("bndist worker: --coordinator: 'ftp://from-the-environment' is not an http:// or https:// address", stderr.Trim());

        (code, stdout, stderr) = BndistProcess.Run(["worker", "--coordinator", "ftp://from-the-command-line"], Limit, environment, _dir);
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Equal("bndist worker: --coordinator: 'ftp://from-the-command-line' is not an http:// or https:// address", stderr.Trim());
    }

    [Theory]
    [InlineData("BNDIST__COORDINATOR__WORKERS", "many", "coordinator", "Coordinator:Workers")]
    [InlineData("BNDIST__COORDINATOR__WORKERS", "0", "coordinator", "--workers must be ≥ 1, got 0")]
    [InlineData("BNDIST__WORKER__THREADS", "-1", "worker", "--threads must be ≥ 0")]
    public void A_bad_configured_value_is_a_one_line_usage_error(string variable, string value, string command, string expected)
    {
        var (code, stdout, stderr) = BndistProcess.Run([command], Limit, new Dictionary<string, string> { [variable] = value }, _dir);
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"bndist {command}: ", stderr);
        Assert.Contains(expected, stderr);
    }
}
