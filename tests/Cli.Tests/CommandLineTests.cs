namespace BnDist.Cli.Tests;

/// <summary>
/// The command line as a user meets it: each command accepts exactly the options it honours,
/// help comes from the declarations, and every mistake is one line on stderr with exit code 2.
/// </summary>
public sealed class CommandLineTests
{
    private static (int Code, string Stdout, string Stderr) Bndist(params string[] args) => BndistProcess.Run(args, TimeSpan.FromMinutes(1));

    private static void AssertOneLineUsageError((int Code, string Stdout, string Stderr) run, string expected)
    {
        Assert.True(run.Code == 2, $"exit code {run.Code}\n{run.Stdout}{run.Stderr}");
        var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got:\n{run.Stderr}");
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain("   at ", run.Stdout + run.Stderr); // no stack trace
    }

    [Theory]
    [InlineData(new[] { "train", "--bogus", "1" }, "bndist train: unknown option --bogus")]
    [InlineData(new[] { "train", "--epochs", "x" }, "bndist train: --epochs expects an integer, got 'x'")]
    [InlineData(new[] { "train", "--lr", "fast" }, "bndist train: --lr expects a number, got 'fast'")]
    [InlineData(new[] { "train", "--batch-size", "0" }, "bndist train: --batch-size must be ≥ 1, got 0")]
    [InlineData(new[] { "train", "--lr", "1", "--lr", "2" }, "bndist train: --lr given 2 times")]
    [InlineData(new[] { "train", "stray" }, "bndist train: unexpected argument 'stray'")]
    [InlineData(new[] { "train", "--lr-schedule", "linear" }, "unknown schedule 'linear'")]
    [InlineData(new[] { "train", "--model", "resnet" }, "unknown model 'resnet'")]
    [InlineData(new[] { "train", "--momentum", "1.5" }, "--momentum: must lie in [0, 1)")]
    [InlineData(new[] { "train", "--save", "--quiet" }, "--save needs a value")]
    [InlineData(new[] { "train", "--resume", "/no/such/checkpoint.safetensors" }, "--resume: no such file '/no/such/checkpoint.safetensors'")]
    [InlineData(new[] { "train", "--init", "/no/such/checkpoint.safetensors" }, "--init: no such file")]
    [InlineData(new[] { "train", "--data", "/no/such/directory" }, "--data: no such directory '/no/such/directory'")]
    [InlineData(new[] { "train", "--data", "/" }, "bndist train: --data: Fashion-MNIST training images not found in '/'")]
    [InlineData(new[] { "train", "--save", "/no/such/directory/final.safetensors" }, "--save: the directory of '/no/such/directory/final.safetensors' does not exist")]
    [InlineData(new[] { "train", "--device", "tpu" }, "bndist train: --device: unknown device 'tpu'")]
    [InlineData(new[] { "train", "--override-config" }, "--override-config only applies with --resume")]
    [InlineData(new[] { "eval" }, "bndist eval: --checkpoint is required")]
    [InlineData(new[] { "frobnicate" }, "bndist: unknown command 'frobnicate'")]
    [InlineData(new[] { "bench" }, "bndist bench: expected a command: step, collective")]
    [InlineData(new[] { "bench", "step", "--model", "resnet" }, "bndist bench step: --model: unknown model 'resnet'")]
    [InlineData(new[] { "coordinator", "--port", "99999" }, "bndist coordinator: --port must lie in [0, 65535], got 99999")]
    [InlineData(new[] { "coordinator", "--port", "http" }, "bndist coordinator: --port expects an integer, got 'http'")]
    [InlineData(new[] { "coordinator", "--token-file", "/no/such/token" }, "--token-file: no such file '/no/such/token'")]
    [InlineData(new[] { "worker", "--coordinator", "10.0.0.1:29500" }, "bndist worker: --coordinator: '10.0.0.1:29500' is not an http:// or https:// address")]
    [InlineData(new[] { "launch", "--workers", "0" }, "bndist launch: --workers must be ≥ 1, got 0")]
    [InlineData(new[] { "launch", "--stats-transport", "nccl" }, "bndist launch: --stats-transport")]
    [InlineData(new[] { "launch", "--bucket-kib", "-1" }, "bndist launch: --bucket-kib must be ≥ 0, got -1")]
    [InlineData(new[] { "worker", "--join-timeout", "0" }, "bndist worker: --join-timeout must be > 0 seconds, got 0")]
    [InlineData(new[] { "worker", "--cpus", "3-1" }, "bndist worker: --cpus: '3-1' is not a list of cores such as 0-3,6")]
    [InlineData(new[] { "launch", "--bind-cores", "maybe" }, "bndist launch: --bind-cores")]
    [InlineData(new[] { "worker", "--bucket-kib", "2000000" }, "bndist worker: --bucket-kib must lie in [0, 1048576], got 2000000")]
    public void A_mistake_on_the_command_line_is_one_line_on_stderr_and_exit_code_2(string[] args, string expected) =>
        AssertOneLineUsageError(Bndist(args), expected);

    [Theory]
    [InlineData("coordinator", "--device", "cpu")]
    [InlineData("coordinator", "--data", "/tmp")]
    [InlineData("coordinator", "--threads", "2")]
    [InlineData("launch", "--threads", "2")]
    [InlineData("eval", "--save", "x")]
    [InlineData("worker", "--model", "mlp-paper")]
    public void A_command_refuses_an_option_it_does_not_honour(string command, string option, string value)
    {
        AssertOneLineUsageError(Bndist(command, option, value), $"bndist {command}: unknown option {option}");
        var (code, help, _) = Bndist(command, "--help");
        Assert.Equal(0, code);
        Assert.DoesNotContain($"  {option} ", help);
    }

    [Theory]
    [InlineData(new[] { "train" }, new[] { "--batch-size", "--keep-last-batch", "--normalize", "--augment", "--threads", "--device", "--data", "--resume", "--override-config" })]
    [InlineData(new[] { "launch" }, new[] { "--normalize", "--augment", "--workers", "--threads-per-worker", "--device", "--data", "--save-init", "--metrics-out", "--sync-bn" })]
    [InlineData(new[] { "coordinator" }, new[] { "--workers", "--host", "--port", "--save-init", "--metrics-out", "--resume" })]
    [InlineData(new[] { "worker" }, new[] { "--coordinator", "--worker-id", "--device", "--threads", "--data", "--token-file", "--advertise" })]
    [InlineData(new[] { "eval" }, new[] { "--checkpoint", "--data", "--threads", "--device" })]
    [InlineData(new[] { "bench", "step" }, new[] { "--model", "--batch-size", "--iterations", "--json" })]
    [InlineData(new[] { "bench", "collective" }, new[] { "--workers", "--channels", "--sizes-mib", "--gradient-path" })]
    public void Help_lists_each_command_options_and_exits_0(string[] command, string[] options)
    {
        var (code, stdout, stderr) = Bndist([.. command, "--help"]);
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains($"bndist {string.Join(' ', command)} [options]", stdout);
        foreach (string option in options) Assert.Contains($"  {option} ", stdout);
    }

    [Fact]
    public void The_coordinator_serves_a_model_its_workers_build_but_launch_and_train_need_one_bndist_builds()
    {
        // The coordinator never builds the model (a user's workers may build one bndist does not know).
        var banner = BndistProcess.FirstLineContaining(["coordinator", "--port", "0", "--model", "my-own-net"], "waiting for", TimeSpan.FromSeconds(30));
        Assert.NotNull(banner);
        AssertOneLineUsageError(Bndist("launch", "--model", "my-own-net"), "bndist launch: --model: unknown model 'my-own-net'");
        AssertOneLineUsageError(Bndist("train", "--model", "my-own-net"), "bndist train: --model: unknown model 'my-own-net'");
    }

    [Fact]
    public void Without_a_command_bndist_prints_its_commands_and_exits_2()
    {
        var (code, stdout, _) = Bndist();
        Assert.Equal(2, code);
        foreach (string command in new[] { "train", "launch", "coordinator", "worker", "eval", "bench" }) Assert.Contains($"  {command} ", stdout);
    }

    [Fact]
    public void The_program_exits_with_2_on_a_usage_error_in_process()
    {
        var saved = System.Console.Error;
        using var err = new StringWriter();
        System.Console.SetError(err);
        try
        {
            Assert.Equal(2, Program.Main(["train", "--epochs", "x"]));
        }
        finally
        {
            System.Console.SetError(saved);
        }
        Assert.Equal("bndist train: --epochs expects an integer, got 'x'", err.ToString().Trim());
    }
}
