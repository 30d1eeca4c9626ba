using System.Text.Json;

namespace BnDist.Cli.Tests;

/// <summary>
/// bndist bench collective with real worker processes: it must keep measuring what it says
/// (each operation's sum is checked by the benchmark itself, which fails otherwise) and print
/// the fields bench/peers/collectives_table.py reads.
/// </summary>
public sealed class CollectiveBenchTests
{
    private static List<JsonElement> Records(string stdout) =>
        [.. stdout.Split('\n').Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement)];

    [Theory]
    [InlineData("auto", "bndist-shm")] // the two processes share this host: statistics and gradients through shared memory
    [InlineData("grpc", "bndist")]
    public void Bench_collective_measures_BN_statistics_per_channel_count_and_gradients_through_the_ring(string transport, string impl)
    {
        var (code, stdout, stderr) = BndistProcess.Run(["bench", "collective", "--workers", "2", "--channels", "4,8", "--ops", "20",
            "--warmup", "3", "--warmup-seconds", "0", "--sizes-mib", "0.01", "--reps", "2", "--stats-transport", transport]);
        Assert.True(code == 0, stdout + stderr);
        var records = Records(stdout);
        var stats = records.Where(r => r.GetProperty("kind").GetString() == "bn-stats").ToList();
        Assert.Equal([4, 8], stats.Select(r => r.GetProperty("channels").GetInt32()));
        Assert.Equal([9, 17], stats.Select(r => r.GetProperty("values").GetInt32()));
        foreach (var r in stats)
        {
            Assert.Equal(impl, r.GetProperty("impl").GetString());
            Assert.Equal(2, r.GetProperty("workers").GetInt32());
            Assert.Equal(20, r.GetProperty("ops").GetInt32());
            Assert.True(r.GetProperty("warmup").GetInt32() >= 3);
            double p50 = r.GetProperty("p50_us").GetDouble(), p99 = r.GetProperty("p99_us").GetDouble();
            Assert.True(p50 > 0 && p99 >= p50, $"p50 {p50} µs, p99 {p99} µs");
            // Process CPU time has the kernel's tick resolution (10 ms): a short run may see none.
            Assert.True(r.GetProperty("worker_cpu_us").GetDouble() >= 0);
        }
        var gradients = Assert.Single(records, r => r.GetProperty("kind").GetString() == "gradients");
        Assert.Equal(impl, gradients.GetProperty("impl").GetString()); // between the workers: their shared memory, or the TCP ring
        Assert.Equal((long)(0.01 * (1 << 20) / sizeof(float)) * sizeof(float), gradients.GetProperty("bytes").GetInt64());
        Assert.True(gradients.GetProperty("warmup").GetInt32() >= 2);
        Assert.True(gradients.GetProperty("busbw_gbs").GetDouble() > 0);
    }

    [Fact]
    public void Bench_collective_measures_gradients_through_the_coordinator_when_asked()
    {
        var (code, stdout, stderr) = BndistProcess.Run(["bench", "collective", "--workers", "3", "--skip-stats", "--warmup-seconds", "0",
            "--sizes-mib", "0.01", "--reps", "2", "--gradient-path", "hub"]);
        Assert.True(code == 0, stdout + stderr);
        var records = Records(stdout);
        var gradients = Assert.Single(records);
        Assert.Equal("bndist-hub", gradients.GetProperty("impl").GetString());
        Assert.Equal("gradients", gradients.GetProperty("kind").GetString());
        Assert.Equal(3, gradients.GetProperty("workers").GetInt32());
    }

    [Fact]
    public void Bench_collective_refuses_an_unknown_gradient_path_naming_it()
    {
        var (code, stdout, stderr) = BndistProcess.Run(["bench", "collective", "--gradient-path", "nccl"]);
        Assert.NotEqual(0, code);
        Assert.Contains("--gradient-path expects ring or hub, got 'nccl'", stdout + stderr);
    }
}
