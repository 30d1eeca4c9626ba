using System.Net;
using System.Net.Sockets;
using BnDist.Coordinator;

namespace BnDist.Cli.Tests;

/// <summary>--host takes host names as well as addresses: localhost, a name DNS resolves, the any-addresses.</summary>
public sealed class CoordinatorHostTests
{
    [Theory]
    [InlineData("127.0.0.1", "127.0.0.1", false)]
    [InlineData("localhost", "127.0.0.1", true)]
    [InlineData("LocalHost", "127.0.0.1", true)]
    [InlineData("0.0.0.0", "0.0.0.0", false)]
    [InlineData("::", "::", false)]
    [InlineData("[::1]", "::1", false)]
    public void A_host_that_is_localhost_or_an_address_needs_no_lookup(string host, string address, bool localhost)
    {
        var listen = new CoordinatorSettings { Host = host }.ListenAddress();
        Assert.Equal(IPAddress.Parse(address), listen.Address);
        Assert.Equal(localhost, listen.Localhost);
    }

    [SkippableFact]
    public void A_host_name_is_resolved_through_DNS()
    {
        // This machine's own name resolves here (/etc/hosts or DNS); the test needs a name that does.
        string name = Dns.GetHostName();
        IPAddress[] expected;
        try { expected = Dns.GetHostAddresses(name); }
        catch (SocketException) { expected = []; }
        Skip.If(expected.Length == 0, $"this machine's name {name} does not resolve here");
        var listen = new CoordinatorSettings { Host = name }.ListenAddress();
        Assert.Contains(listen.Address, expected);
        Assert.False(listen.Localhost);
    }

    [Fact]
    public void An_unresolvable_host_name_fails_validation_naming_it()
    {
        // .invalid never resolves (RFC 2606).
        var e = Assert.Throws<ArgumentException>(() => new CoordinatorSettings { Host = "no-such-host.invalid" }.Validate());
        Assert.StartsWith("--host: cannot resolve 'no-such-host.invalid'", e.Message);
    }

    [Fact]
    public void The_coordinator_command_accepts_connections_on_localhost_given_by_name()
    {
        int port = FreePort();
        using var coordinator = BndistProcess.Start(["coordinator", "--host", "localhost", "--port", port.ToString(), "--model", "mlp-paper"]);
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            bool connected = false;
            while (!connected && DateTime.UtcNow < deadline && !coordinator.HasExited)
            {
                using var client = new TcpClient();
                try
                {
                    client.Connect(IPAddress.Loopback, port);
                    connected = true;
                }
                catch (SocketException)
                {
                    Thread.Sleep(100);
                }
            }
            Assert.True(connected, coordinator.HasExited
                ? $"the coordinator exited with {coordinator.ExitCode}: {coordinator.StandardError.ReadToEnd()}"
                : $"nothing listens on 127.0.0.1:{port} after 30 s");
        }
        finally
        {
            if (!coordinator.HasExited) coordinator.Kill(entireProcessTree: true);
            coordinator.WaitForExit();
        }
    }

    [Fact]
    public void The_coordinator_command_refuses_an_unresolvable_host_in_one_line_with_exit_code_2()
    {
        var (code, stdout, stderr) = BndistProcess.Run(["coordinator", "--host", "no-such-host.invalid"], TimeSpan.FromMinutes(1));
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.StartsWith("bndist coordinator: --host: cannot resolve 'no-such-host.invalid'", stderr);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
