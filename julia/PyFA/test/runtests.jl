# Tests for PyFA: `]test PyFA` (or `julia --project=julia/PyFA -e 'using Pkg; Pkg.test()'`).
# GPU tests: Pkg.test runs in a sandbox holding only the test dependencies, so CUDA is added on
# request, as Flux's own tests do: `PYFA_TEST_CUDA=true` in the environment; they then run when
# CUDA.functional() at run time.
using PyFA
using PyFA: FA_MODES, fa_matmul, feedback_matrix
using Flux
using ChainRulesCore: ChainRulesCore, NoTangent, unthunk
using ChainRulesTestUtils
using Random
using Test

const TEST_CUDA = get(ENV, "PYFA_TEST_CUDA", "false") == "true"
if TEST_CUDA
    using Pkg: Pkg
    Pkg.add(["CUDA", "cuDNN"])
    @eval using CUDA, cuDNN
end

"""Gradients of `mse(chain(x), y)` for a two-layer tanh/identity chain, written out by hand.
`B2` is the matrix the second layer sends its error through (its weight for backprop)."""
function by_hand(W1, b1, W2, b2, B1, B2, x, y)
    h1 = tanh.(W1 * x .+ b1)
    z2 = W2 * h1 .+ b2
    δ2 = 2 .* (z2 .- y) ./ length(y)
    δ1 = (B2' * δ2) .* (1 .- h1 .^ 2)
    return (W1 = δ1 * x', b1 = vec(sum(δ1; dims = 2)), W2 = δ2 * h1', b2 = vec(sum(δ2; dims = 2)),
            x = B1' * δ1)
end

@testset "PyFA" begin

@testset "rrule: with feedback == weight it is the true derivative" begin
    rng = Xoshiro(0)
    W = randn(rng, 3, 4)
    test_rrule(fa_matmul, W, randn(rng, 4, 5), copy(W) ⊢ NoTangent())
    test_rrule(fa_matmul, W, randn(rng, 4), copy(W) ⊢ NoTangent())
end

@testset "rrule: the input gets feedbackᵀ ȳ" begin
    rng = Xoshiro(1)
    W, B, x, ȳ = randn(rng, 3, 4), randn(rng, 3, 4), randn(rng, 4, 5), randn(rng, 3, 5)
    y, back = ChainRulesCore.rrule(fa_matmul, W, x, B)
    @test y ≈ W * x
    ∂self, ∂W, ∂x, ∂B = back(ȳ)
    @test ∂self isa NoTangent
    @test ∂B isa NoTangent
    @test unthunk(∂W) ≈ ȳ * x'
    @test unthunk(∂x) ≈ B' * ȳ
    @test !isapprox(unthunk(∂x), W' * ȳ; rtol = 0.1)
    # the same through a thunked cotangent, and for a vector input
    @test unthunk(back(ChainRulesCore.@thunk(ȳ))[3]) ≈ B' * ȳ
    xv, ȳv = randn(rng, 4), randn(rng, 3)
    _, backv = ChainRulesCore.rrule(fa_matmul, W, xv, B)
    @test unthunk(backv(ȳv)[2]) ≈ ȳv * xv'
    @test unthunk(backv(ȳv)[3]) ≈ B' * ȳv
end

@testset "Flux.gradient through a Chain uses FA, not backprop" begin
    rng = Xoshiro(2)
    W1, B1, b1 = randn(rng, Float32, 5, 4), randn(rng, Float32, 5, 4), randn(rng, Float32, 5)
    W2, B2, b2 = randn(rng, Float32, 3, 5), randn(rng, Float32, 3, 5), randn(rng, Float32, 3)
    x, y = randn(rng, Float32, 4, 7), randn(rng, Float32, 3, 7)
    loss(m, x) = Flux.mse(m(x), y)

    fa = Chain(DenseFA(W1, B1, b1, tanh), DenseFA(W2, B2, b2))
    bp = Chain(Dense(W1, b1, tanh), Dense(W2, b2))
    gfa, gxfa = Flux.gradient(loss, fa, x)
    gbp, gxbp = Flux.gradient(loss, bp, x)

    want = by_hand(W1, b1, W2, b2, B1, B2, x, y)
    @test gfa.layers[1].weight ≈ want.W1
    @test gfa.layers[1].bias ≈ want.b1
    @test gfa.layers[2].weight ≈ want.W2
    @test gfa.layers[2].bias ≈ want.b2
    @test gxfa ≈ want.x
    @test gfa.layers[1].feedback === nothing
    @test gfa.layers[2].feedback === nothing

    # the top layer's gradient is the true one; below it FA and backprop part ways
    @test gfa.layers[2].weight ≈ gbp.layers[2].weight
    @test !isapprox(gfa.layers[1].weight, gbp.layers[1].weight; rtol = 0.1)
    @test !isapprox(gxfa, gxbp; rtol = 0.1)

    # mode :bp is exact backprop: ∂weight is ȳxᵀ and nothing more, ∂x uses the weights
    bpfa = Chain(DenseFA(W1, B1, b1, tanh, :bp), DenseFA(W2, B2, b2, identity, :bp))
    gbpfa, gxbpfa = Flux.gradient(loss, bpfa, x)
    wantbp = by_hand(W1, b1, W2, b2, W1, W2, x, y)
    @test gbpfa.layers[1].weight ≈ wantbp.W1
    @test gbpfa.layers[1].weight ≈ gbp.layers[1].weight
    @test gbpfa.layers[1].bias ≈ gbp.layers[1].bias
    @test gbpfa.layers[2].weight ≈ gbp.layers[2].weight
    @test gxbpfa ≈ gxbp
end

@testset "feedback_matrix: each mode's B" begin
    rng = Xoshiro(3)
    W, R = randn(rng, 3, 4), randn(rng, 3, 4)
    s = sqrt(2 / (3 + 4))
    @test feedback_matrix(:fa, W, R) === R
    @test feedback_matrix(:bp, W, R) === W
    @test feedback_matrix(:usf, W, R) ≈ sign.(W) .* s
    @test feedback_matrix(:frsf, W, R) ≈ abs.(R) .* sign.(W)
    @test feedback_matrix("frsf", W, R) ≈ abs.(R) .* sign.(W)
    B1, B2 = feedback_matrix(:brsf, W, R), feedback_matrix(:brsf, W, R)
    @test size(B1) == size(W)
    @test sign.(B1) == sign.(W)
    @test B1 != B2                      # R is redrawn on every call
    W32, R32 = Float32.(W), Float32.(R)
    @test eltype(feedback_matrix(:usf, W32, R32)) == Float32
    @test eltype(feedback_matrix(:brsf, W32, R32)) == Float32
    @test_throws ArgumentError feedback_matrix(:nope, W, R)

    # in a layer, ∂x goes through that mode's B and ∂weight stays ȳxᵀ
    x = randn(rng, 4, 2)
    for mode in FA_MODES
        layer = DenseFA(W, R, false, identity, mode)
        gl, gx = Flux.gradient((l, x) -> sum(l(x)), layer, x)
        @test gl.weight ≈ ones(3, 2) * x'
        @test gl.feedback === nothing
        if mode === :brsf   # B is redrawn: only its shape and its difference from W are fixed
            @test size(gx) == size(x)
            @test !isapprox(gx, W' * ones(3, 2); rtol = 0.1)
        else
            @test gx ≈ feedback_matrix(mode, W, R)' * ones(3, 2)
        end
    end
end

@testset "training never touches feedback" begin
    rng = Xoshiro(4)
    model = Chain(DenseFA(4 => 5, tanh; rng), DenseFA(5 => 3; rng))
    @test keys(Flux.trainable(model.layers[1])) == (:weight, :bias)
    feedback = [copy(l.feedback) for l in model.layers]
    weights = [copy(l.weight) for l in model.layers]
    opt = Flux.setup(Adam(0.01), model)
    @test opt.layers[1].weight isa Flux.Optimisers.Leaf     # optimiser state for the weight...
    @test !(opt.layers[1].feedback isa Flux.Optimisers.Leaf) # ...and none for the feedback
    x, y = randn(rng, Float32, 4, 8), randn(rng, Float32, 3, 8)
    for _ in 1:3
        grads = Flux.gradient(m -> Flux.mse(m(x), y), model)
        Flux.update!(opt, model, grads[1])
    end
    @test all(l.feedback == b for (l, b) in zip(model.layers, feedback))
    @test all(l.weight != w for (l, w) in zip(model.layers, weights))
end

@testset "constructors, Functors round trip, f32/f64 keep feedback" begin
    rng = Xoshiro(5)
    layer = DenseFA(3 => 2, tanh; mode = :frsf, rng)
    @test layer.weight isa Matrix{Float32} && layer.feedback isa Matrix{Float32}
    @test layer.weight != layer.feedback
    @test layer.bias == zeros(Float32, 2)
    @test layer.mode === :frsf && layer.σ === tanh
    @test DenseFA(3 => 2; mode = "usf").mode === :usf
    @test DenseFA(rand(2, 3), rand(2, 3), false, relu, "bp").mode === :bp

    l64 = f64(layer)
    @test l64 isa DenseFA
    @test l64.feedback isa Matrix{Float64} && l64.feedback ≈ layer.feedback
    @test l64.mode === :frsf && l64.σ === tanh
    @test f32(l64).feedback == layer.feedback
    copied = fmap(a -> a isa AbstractArray ? copy(a) : a, layer)
    @test copied.feedback == layer.feedback && copied.feedback !== layer.feedback
    @test copied.mode === layer.mode
    nobias = DenseFA(3 => 2; bias = false)
    @test nobias.bias === false
    @test f64(nobias).bias === false
    @test sprint(show, nobias) == "DenseFA(3 => 2; bias=false)"
    @test sprint(show, layer) == "DenseFA(3 => 2, tanh; mode=:frsf)"
end

@testset "input shapes and clear errors" begin
    layer = DenseFA(3 => 2)
    @test size(layer(rand(Float32, 3))) == (2,)
    @test size(layer(rand(Float32, 3, 5))) == (2, 5)
    @test size(layer(rand(Float32, 3, 4, 5))) == (2, 4, 5)
    @test_throws DimensionMismatch layer(rand(Float32, 4, 5))
    @test_throws DimensionMismatch layer(rand(Float32, 4))
    err = try
        layer(rand(Float32, 5, 4))
    catch e
        e
    end
    @test err isa DimensionMismatch
    @test occursin("DenseFA(3 => 2)", err.msg) && occursin("5×4", err.msg)
    @test_throws DimensionMismatch DenseFA(rand(2, 3), rand(3, 2))
    @test_throws DimensionMismatch DenseFA(rand(2, 3), rand(2, 3), rand(3))
    @test_throws ArgumentError DenseFA(3 => 2; mode = :nope)
end

if TEST_CUDA && CUDA.functional()
    @testset "CUDA: same FA gradients on the GPU" begin
        rng = Xoshiro(6)
        cpu_model = Chain(DenseFA(4 => 5, tanh; rng), DenseFA(5 => 3; rng))
        gpu_model = gpu(cpu_model)
        @test gpu_model.layers[1].feedback isa CUDA.CuArray
        @test gpu_model.layers[1].weight isa CUDA.CuArray
        x, y = randn(rng, Float32, 4, 8), randn(rng, Float32, 3, 8)
        xg, yg = gpu(x), gpu(y)
        g_cpu = Flux.gradient(m -> Flux.mse(m(x), y), cpu_model)[1]
        g_gpu = Flux.gradient(m -> Flux.mse(m(xg), yg), gpu_model)[1]
        for i in 1:2
            @test isapprox(Array(g_gpu.layers[i].weight), g_cpu.layers[i].weight; rtol = 1e-3, atol = 1e-5)
            @test isapprox(Array(g_gpu.layers[i].bias), g_cpu.layers[i].bias; rtol = 1e-3, atol = 1e-5)
        end
        W = CUDA.randn(Float32, 3, 4)
        B = feedback_matrix(:brsf, W, CUDA.randn(Float32, 3, 4))
        @test B isa CUDA.CuArray && Array(sign.(B)) == Array(sign.(W))
        opt = Flux.setup(Adam(0.01), gpu_model)
        fb = Array(gpu_model.layers[1].feedback)
        Flux.update!(opt, gpu_model, g_gpu)
        @test Array(gpu_model.layers[1].feedback) == fb
        @test cpu(gpu_model).layers[1].feedback == fb
    end
else
    @info "PyFA: CUDA tests skipped (set PYFA_TEST_CUDA=true on a machine with a working GPU)"
end

end # @testset "PyFA"
