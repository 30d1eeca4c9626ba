using BnDist.Core.Backends;

namespace BnDist.Cli.Commands;

internal static class Devices
{
    /// <summary>The backend for --device; an unknown or absent device is a usage error.</summary>
    public static IBackend Open(string device, int threads)
    {
        try
        {
            return BackendFactory.Create(device, threads);
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }
}
