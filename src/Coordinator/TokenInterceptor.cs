using BnDist.Protos;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace BnDist.Coordinator;

/// <summary>
/// Refuses every call that does not carry the run token (Unauthenticated) and logs who tried.
/// The health service (grpc.health.v1) is exempt, so orchestrators can probe without the token.
/// </summary>
public sealed class TokenInterceptor(CoordinatorSettings settings, ILogger<TokenInterceptor> logger) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, responseStream, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }

    private void Check(ServerCallContext context)
    {
        if (settings.Token is null || context.Method.StartsWith("/grpc.health.v1.", StringComparison.Ordinal)) return;
        string? header = context.RequestHeaders.GetValue(RunToken.Header);
        if (RunToken.Matches(header, settings.Token)) return;
        logger.LogWarning("Refused {Method} from {Peer}: {Problem}", context.Method, context.Peer,
            header is null ? "no run token" : "wrong run token");
        throw new RpcException(new Status(StatusCode.Unauthenticated,
            header is null ? "this coordinator requires the run token (--token-file or BNDIST_TOKEN)" : "wrong run token"));
    }
}
