// grpc-hub: a bare gRPC-dotnet all-reduce hub, the floor under BnDist's BN-statistics path.
//
// The driver starts Kestrel (h2c on 127.0.0.1, default options) in its own process and K client
// processes of this same program. Each client opens one bidirectional stream and, back to
// back, sends 2·C+1 float64 values and waits for the sum; the hub answers every stream from the
// thread that received the last contribution. No headers, no validation, no running statistics,
// no token: what is left is gRPC-dotnet itself (HTTP/2 framing, protobuf, Kestrel, SocketsHttpHandler).
// --client async (the default, impl "grpc-hub"): each client awaits its operations, so the next
// one starts on the thread that completed the answer: gRPC-dotnet at its fastest. --client sync
// (impl "grpc-hub-sync"): the calling thread blocks on each operation, as a BnDist training
// thread must (it computes the next layer with the answer), which costs one thread wake-up more.
//
// Warm-up: at least W operations and S seconds; rank 0 ends it for everyone through a flag in
// the sum's first value. Then N timed operations; rank 0 prints one JSON line per C (the fields
// of bench/peers: impl "grpc-hub", kind "bn-stats", and worker_cpu_us, the CPU time rank 0's
// process spent per timed operation) to stdout and, with --out, appends it there.
//
//   dotnet run -c Release --project bench/peers/GrpcHub -- --workers 4 --channels 64,256,1024 --ops 2000
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Google.Protobuf.Collections;
using Grpc.Core;
using Grpc.Net.Client;
using GrpcHub.V1;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

var opts = Options.Parse(args);
return opts.Role == "client" ? await RunClient(opts) : await RunDriver(opts);

static async Task<int> RunDriver(Options o)
{
    var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
    builder.Logging.SetMinimumLevel(LogLevel.Warning);
    builder.Services.AddGrpc();
    builder.Services.AddSingleton(new Reducer(o.Workers));
    builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
    var app = builder.Build();
    app.MapGrpcService<HubService>();
    await app.StartAsync();
    string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
    var clients = new List<Process>();
    for (int rank = 0; rank < o.Workers; rank++)
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        foreach (string a in o.ClientArguments(address, rank)) info.ArgumentList.Add(a);
        clients.Add(Process.Start(info)!);
    }
    int failed = 0;
    foreach (var c in clients)
    {
        await c.WaitForExitAsync();
        if (c.ExitCode != 0) failed++;
    }
    await app.StopAsync();
    if (failed > 0) Console.Error.WriteLine($"grpc-hub: {failed} client(s) failed");
    return failed == 0 ? 0 : 1;
}

static async Task<int> RunClient(Options o)
{
    bool sync = o.Client == "sync";
    using var channel = GrpcChannel.ForAddress(o.Address!);
    var client = new Hub.HubClient(channel);
    using var call = client.Reduce(new Metadata { { "rank", o.Rank.ToString(CultureInfo.InvariantCulture) } });
    long sequence = 0;
    async Task<double[]> ReduceAsync(double[] values)
    {
        var message = new Values { Sequence = sequence++ };
        message.Values_.AddRange(values);
        await call.RequestStream.WriteAsync(message);
        if (!await call.ResponseStream.MoveNext()) throw new InvalidOperationException("the hub closed the stream");
        return [.. call.ResponseStream.Current.Values_];
    }
    // sync: the calling thread blocks on each operation, as a training thread does; async: the
    // loop goes on in the thread that completed the answer (one thread wake-up fewer).
    async ValueTask<double[]> Reduce(double[] values) => sync ? ReduceAsync(values).GetAwaiter().GetResult() : await ReduceAsync(values);

    foreach (int c in o.Channels)
    {
        int n = 2 * c + 1;
        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = i == 0 ? 8 : 0.01 * (i % 7) + o.Rank;
        long start = Stopwatch.GetTimestamp();
        int warmup = 0;
        while (true)
        {
            bool done = o.Rank == 0 && warmup >= o.Warmup && Stopwatch.GetElapsedTime(start).TotalSeconds >= o.WarmupSeconds;
            values[0] = done ? 8.5 : 8;
            double[] sum = await Reduce(values);
            warmup++;
            if (sum[0] != Math.Floor(sum[0])) break;
        }
        values[0] = 8;
        var latencies = new double[o.Ops];
        double[] last = [];
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        for (int i = 0; i < o.Ops; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            last = await Reduce(values);
            latencies[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        double cpuPerOp = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMicroseconds / o.Ops;
        if (last[0] != 8.0 * o.Workers) throw new InvalidOperationException($"the sum of the counts is {last[0]}, not {8 * o.Workers}");
        Array.Sort(latencies);
        if (o.Rank != 0) continue;
        string line = JsonSerializer.Serialize(new
        {
            impl = sync ? "grpc-hub-sync" : "grpc-hub", kind = "bn-stats", workers = o.Workers, channels = c, values = n, ops = o.Ops, warmup,
            p50_us = Percentile(latencies, 0.50), p99_us = Percentile(latencies, 0.99), mean_us = latencies.Average(),
            worker_cpu_us = cpuPerOp,
        });
        Console.WriteLine(line);
        if (o.Out is not null) File.AppendAllLines(o.Out, [line]);
    }
    await call.RequestStream.CompleteAsync();
    while (await call.ResponseStream.MoveNext()) { }
    return 0;
}

static double Percentile(double[] sorted, double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];

/// <summary>Sums the K contributions of each operation; the last contributor answers every stream.</summary>
sealed class Reducer(int workers)
{
    private readonly object _gate = new();
    private readonly IServerStreamWriter<Values>?[] _writers = new IServerStreamWriter<Values>?[workers];
    // One write at a time per stream: client r may receive this answer, and the next operation
    // complete on another thread, before this thread's write to r has returned.
    private readonly SemaphoreSlim[] _writing = [.. Enumerable.Range(0, workers).Select(_ => new SemaphoreSlim(1, 1))];
    private double[] _sum = [];
    private int _arrived;

    public void Register(int rank, IServerStreamWriter<Values> writer)
    {
        lock (_gate) _writers[rank] = writer;
    }

    public async Task Contribute(Values message)
    {
        Values? reply = null;
        lock (_gate)
        {
            RepeatedField<double> v = message.Values_;
            if (_arrived == 0) _sum = new double[v.Count];
            if (v.Count != _sum.Length) throw new RpcException(new Status(StatusCode.InvalidArgument, "contributions differ in length"));
            for (int i = 0; i < v.Count; i++) _sum[i] += v[i];
            if (++_arrived == workers)
            {
                reply = new Values { Sequence = message.Sequence };
                reply.Values_.AddRange(_sum);
                _arrived = 0;
            }
        }
        if (reply is null) return;
        for (int r = 0; r < _writers.Length; r++)
        {
            await _writing[r].WaitAsync();
            try
            {
                await _writers[r]!.WriteAsync(reply);
            }
            finally
            {
                _writing[r].Release();
            }
        }
    }
}

sealed class HubService(Reducer reducer) : Hub.HubBase
{
    public override async Task Reduce(IAsyncStreamReader<Values> requests, IServerStreamWriter<Values> responses, ServerCallContext context)
    {
        int rank = int.Parse(context.RequestHeaders.GetValue("rank")!, CultureInfo.InvariantCulture);
        reducer.Register(rank, responses);
        await foreach (var message in requests.ReadAllAsync(context.CancellationToken)) await reducer.Contribute(message);
    }
}

sealed record Options(string Role, int Workers, int[] Channels, int Ops, int Warmup, double WarmupSeconds, string? Out, string? Address, int Rank,
    string Client)
{
    public static Options Parse(string[] args)
    {
        var map = new Dictionary<string, string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
                throw new ArgumentException($"grpc-hub: expected --name value, got '{args[i]}'");
            map[args[i][2..]] = args[++i];
        }
        string Get(string name, string fallback) => map.Remove(name, out var v) ? v : fallback;
        var o = new Options(Get("role", "driver"), int.Parse(Get("workers", "2"), CultureInfo.InvariantCulture),
            [.. Get("channels", "64,256,1024").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))],
            int.Parse(Get("ops", "2000"), CultureInfo.InvariantCulture), int.Parse(Get("warmup", "1000"), CultureInfo.InvariantCulture),
            double.Parse(Get("warmup-seconds", "5"), CultureInfo.InvariantCulture), map.Remove("out", out var outFile) ? Path.GetFullPath(outFile) : null,
            map.Remove("address", out var address) ? address : null, int.Parse(Get("rank", "0"), CultureInfo.InvariantCulture),
            Get("client", "async"));
        if (o.Client is not ("async" or "sync")) throw new ArgumentException($"grpc-hub: --client takes async or sync, got '{o.Client}'");
        if (map.Count > 0) throw new ArgumentException($"grpc-hub: unknown option(s) {string.Join(", ", map.Keys.Select(k => "--" + k))}");
        return o;
    }

    public IEnumerable<string> ClientArguments(string address, int rank) =>
    [
        "--role", "client", "--address", address, "--rank", rank.ToString(CultureInfo.InvariantCulture),
        "--workers", Workers.ToString(CultureInfo.InvariantCulture), "--channels", string.Join(',', Channels),
        "--ops", Ops.ToString(CultureInfo.InvariantCulture), "--warmup", Warmup.ToString(CultureInfo.InvariantCulture),
        "--warmup-seconds", WarmupSeconds.ToString(CultureInfo.InvariantCulture), "--client", Client, .. Out is null ? Array.Empty<string>() : ["--out", Out],
    ];
}
