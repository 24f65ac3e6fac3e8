# Tests for PyFA: `]test PyFA` (or `julia --project=julia/PyFA -e 'using Pkg; Pkg.test()'`).
#
# Optional packages. Pkg.test runs in a sandbox holding only the test dependencies, so what some
# testsets need is added here, as Flux's own tests do, BEFORE anything else is loaded: adding a
# package re-resolves the environment, which must not change a package this session has loaded.
# - Enzyme and Mooncake (the FA rule under Flux's other AD backends: PyFA's package extensions)
#   are always tried. Where one cannot be installed or loaded (say, on a Julia version it does not
#   support), its testsets are skipped with a warning and a Broken entry in the summary, never
#   silently; with PYFA_REQUIRE_JULIA=1 in the environment that is an error instead.
# - CUDA and cuDNN only with PYFA_TEST_CUDA=true; the GPU tests then run when CUDA.functional().
using Pkg: Pkg

const TEST_CUDA = get(ENV, "PYFA_TEST_CUDA", "false") == "true"
const REQUIRE_ALL = get(ENV, "PYFA_REQUIRE_JULIA", "") == "1"
# Registered UUIDs, from Enzyme.jl's and Mooncake.jl's own Project.toml.
const AD_PACKAGES = ["Enzyme" => "7da242da-08ed-463a-9acd-ee780be4f1d9",
                     "Mooncake" => "da2b9cff-9c12-43a0-ae48-6db2b0edb7d6"]

TEST_CUDA && Pkg.add(["CUDA", "cuDNN"])

"""Add each AD package to the test environment; return, for those that could not be, why."""
function add_ad_packages()
    why = Dict{String,String}()
    for (name, uuid) in AD_PACKAGES
        try
            Pkg.add(Pkg.PackageSpec(; name, uuid))
        catch err
            why[name] = "could not be installed: " * sprint(showerror, err)
        end
    end
    return why
end
const AD_SKIPPED = add_ad_packages()

using PyFA
using PyFA: FA_MODES, fa_matmul, fa_conv, dfa_matmul, dfa_conv, dfa_output, feedback_matrix,
            direct_feedback_of
using Flux
using ChainRulesCore: ChainRulesCore, NoTangent, unthunk
using ChainRulesTestUtils
using Random
using Test

if TEST_CUDA
    @eval using CUDA, cuDNN
end

"""Whether `using PyFA, name` works, tried in a child Julia so that a failure leaves this one as
it was (and the child's precompilation serves this process)."""
function loads(name)
    cmd = `$(Base.julia_cmd()) --startup-file=no --project=$(Base.active_project()) -e "using PyFA, $name"`
    return success(pipeline(cmd; stdout = stderr, stderr = stderr))
end
for (name, _) in AD_PACKAGES
    haskey(AD_SKIPPED, name) || loads(name) ||
        (AD_SKIPPED[name] = "was installed, but `using PyFA, $name` failed (see its output above)")
end

# Loading Enzyme or Mooncake loads PyFA's extension for it (tested below, not assumed).
if !haskey(AD_SKIPPED, "Enzyme")
    @eval using Enzyme: Enzyme
end
if !haskey(AD_SKIPPED, "Mooncake")
    @eval using Mooncake: Mooncake
end
for (name, why) in AD_SKIPPED
    message = "PyFA: the $name testsets are SKIPPED on Julia $VERSION: $name $why"
    REQUIRE_ALL && error(message * "\n(PYFA_REQUIRE_JULIA=1: a skip is a failure)")
    @warn message
end
const AD_READY = [name for (name, _) in AD_PACKAGES if !haskey(AD_SKIPPED, name)]

"""softmax over each column (the classes of one sample), written out."""
function softmax_columns(z)
    e = exp.(z .- maximum(z; dims = 1))
    return e ./ sum(e; dims = 1)
end

"""∂L/∂ŷ by hand: Flux.mse (`:mse`, the mean over every element) or softmax cross-entropy
averaged over the batch (`:ce`, Flux.logitcrossentropy with one-hot columns `y`)."""
output_error(z, y, loss::Symbol) =
    loss === :mse ? 2 .* (z .- y) ./ length(y) : (softmax_columns(z) .- y) ./ size(y, 2)

"""Gradients of `loss(chain(x), y)` for a two-layer tanh/identity chain, written out by hand.
`B2` is the matrix the second layer sends its error through (its weight for backprop)."""
function by_hand(W1, b1, W2, b2, B1, B2, x, y; loss::Symbol = :mse)
    h1 = tanh.(W1 * x .+ b1)
    z2 = W2 * h1 .+ b2
    δ2 = output_error(z2, y, loss)
    δ1 = (B2' * δ2) .* (1 .- h1 .^ 2)
    return (W1 = δ1 * x', b1 = vec(sum(δ1; dims = 2)), W2 = δ2 * h1', b2 = vec(sum(δ2; dims = 2)),
            x = B1' * δ1)
end

"""DFA gradients of `mse(chain(x), y)` for a three-layer tanh/tanh/identity chain, by hand: the
output error `e` reaches each hidden layer through its own `B_l` (C × h_l), the top layer gets
its true gradient, the input gets the first layer's FA signal `F1ᵀ δ1`."""
function by_hand_dfa(W1, b1, W2, b2, W3, b3, F1, B1, B2, x, y)
    h1 = tanh.(W1 * x .+ b1)
    h2 = tanh.(W2 * h1 .+ b2)
    z3 = W3 * h2 .+ b3
    e = 2 .* (z3 .- y) ./ length(y)
    δ1 = (B1' * e) .* (1 .- h1 .^ 2)
    δ2 = (B2' * e) .* (1 .- h2 .^ 2)
    return (W1 = δ1 * x', b1 = vec(sum(δ1; dims = 2)), W2 = δ2 * h1', b2 = vec(sum(δ2; dims = 2)),
            W3 = e * h2', b3 = vec(sum(e; dims = 2)), x = F1' * δ1)
end

# 2-d cross-correlation by its definition, WHCN, 1-based: output (i, j) of channel o (group g)
# reads x at p = (i-1)·stride₁ + (u-1)·dilation₁ - pad_low₁ + 1 (q likewise), zero outside.
function _taps(xsize, wsize, stride, pad, dilation, groups)
    X, Y, _, N = xsize
    KW, KH, CG, O = wsize
    OW = (X + pad[1] + pad[2] - dilation[1] * (KW - 1) - 1) ÷ stride[1] + 1
    OH = (Y + pad[3] + pad[4] - dilation[2] * (KH - 1) - 1) ÷ stride[2] + 1
    taps = Tuple{NTuple{4, Int}, NTuple{4, Int}, NTuple{4, Int}}[]  # (x index, w index, y index)
    for n in 1:N, o in 1:O, j in 1:OH, i in 1:OW, c in 1:CG, v in 1:KH, u in 1:KW
        p = (i - 1) * stride[1] + (u - 1) * dilation[1] - pad[1] + 1
        q = (j - 1) * stride[2] + (v - 1) * dilation[2] - pad[3] + 1
        (1 <= p <= X && 1 <= q <= Y) || continue
        g = (o - 1) ÷ (O ÷ groups)
        push!(taps, ((p, q, g * CG + c, n), (u, v, c, o), (i, j, o, n)))
    end
    return taps, (OW, OH, O, N)
end

function crosscor_loops(x, W, stride, pad, dilation, groups)
    taps, ysize = _taps(size(x), size(W), stride, pad, dilation, groups)
    y = zeros(eltype(x), ysize)
    for (xi, wi, yi) in taps
        y[yi...] += W[wi...] * x[xi...]
    end
    return y
end

"""∂x of `crosscor(x, W)` for the upstream `δ`, with `M` in `W`'s place (FA: `M = B`)."""
function input_grad_loops(δ, M, xsize, stride, pad, dilation, groups)
    taps, _ = _taps(xsize, size(M), stride, pad, dilation, groups)
    dx = zeros(eltype(δ), xsize)
    for (xi, wi, yi) in taps
        dx[xi...] += M[wi...] * δ[yi...]
    end
    return dx
end

function weight_grad_loops(x, δ, wsize, stride, pad, dilation, groups)
    taps, _ = _taps(size(x), wsize, stride, pad, dilation, groups)
    dW = zeros(eltype(x), wsize)
    for (xi, wi, yi) in taps
        dW[wi...] += δ[yi...] * x[xi...]
    end
    return dW
end

"""Zygote reports no gradient as `nothing`, Enzyme and Mooncake as zeros."""
no_gradient(g) = g === nothing || g isa ChainRulesCore.AbstractZero || (g isa AbstractArray && iszero(g))

_duplicated(a::AbstractArray) = Enzyme.Duplicated(a, zero(a))
_duplicated(model) = Enzyme.Duplicated(model)  # Flux.@layer defines it: a zeroed copy for the gradient

"""`Flux.gradient`, through every AD backend and entry point under test: `label => grad`, with
`grad(f, args...)` returning one gradient per argument. Zygote always; Enzyme and Mooncake when
loaded."""
function gradient_entry_points()
    points = Pair{String,Function}[
        "Zygote: Flux.gradient(f, m, x)" => (f, args...) -> Flux.gradient(f, args...),
        "Zygote: Flux.gradient(f, AutoZygote(), m, x)" =>
            (f, args...) -> Flux.gradient(f, AutoZygote(), args...)]
    if "Enzyme" in AD_READY
        push!(points, "Enzyme: Flux.gradient(f, AutoEnzyme(), m, x)" =>
            (f, args...) -> Flux.gradient(f, AutoEnzyme(), args...))
        push!(points, "Enzyme: Flux.gradient(f, Duplicated(m), Duplicated(x))" =>
            (f, args...) -> Flux.gradient(f, map(_duplicated, args)...))
    end
    if "Mooncake" in AD_READY
        push!(points, "Mooncake: Flux.gradient(f, AutoMooncake(), m, x)" =>
            (f, args...) -> Flux.gradient(f, AutoMooncake(), args...))
    end
    return points
end

@testset "PyFA" begin

@testset "rrule: with feedback == weight (or mode :bp) it is the true derivative" begin
    rng = Xoshiro(0)
    W = randn(rng, 3, 4)
    test_rrule(fa_matmul, W, randn(rng, 4, 5), copy(W) ⊢ NoTangent())
    test_rrule(fa_matmul, W, randn(rng, 4), copy(W) ⊢ NoTangent())
    # With a mode, the pullback's type depends on it (mode :kp gives the feedback an array, the
    # others NoTangent()), so it is not inferrable from the argument types: not checked here.
    test_rrule(fa_matmul, W, randn(rng, 4, 5), copy(W) ⊢ NoTangent(), :fa ⊢ NoTangent();
               check_inferred = false)
    test_rrule(fa_matmul, W, randn(rng, 4, 5), randn(rng, 3, 4) ⊢ NoTangent(), :bp ⊢ NoTangent();
               check_inferred = false)
    # the conv rule, in mode :bp (or :fa with feedback == weight), is NNlib's conv rule: the true
    # derivative of the cross-correlation
    x, Wc = randn(rng, 5, 4, 2, 3), randn(rng, 2, 3, 2, 4)
    cdims = DenseConvDims(x, Wc; padding = (1, 0, 0, 1), flipkernel = true)
    test_rrule(fa_conv, x, Wc, randn(rng, size(Wc)) ⊢ NoTangent(), cdims ⊢ NoTangent(),
               :bp ⊢ NoTangent(); check_inferred = false)
    test_rrule(fa_conv, x, Wc, copy(Wc) ⊢ NoTangent(), cdims ⊢ NoTangent(), :fa ⊢ NoTangent();
               check_inferred = false)
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
    # the four-argument form builds B = feedback_matrix(mode, W, B) in the pullback
    y4, back4 = ChainRulesCore.rrule(fa_matmul, W, x, B, :frsf)
    @test y4 ≈ W * x
    tangents = back4(ȳ)
    @test length(tangents) == 5 && tangents[4] isa NoTangent && tangents[5] isa NoTangent
    @test unthunk(tangents[2]) ≈ ȳ * x'
    @test unthunk(tangents[3]) ≈ (abs.(B) .* sign.(W))' * ȳ
    @test_throws ArgumentError fa_matmul(W, x, B, :nope)
    @test_throws ArgumentError ChainRulesCore.rrule(fa_matmul, W, x, B, :nope)
end

@testset "rrule: KP hands the feedback the weight's gradient" begin
    rng = Xoshiro(9)
    W, B, x, ȳ = randn(rng, 3, 4), randn(rng, 3, 4), randn(rng, 4, 5), randn(rng, 3, 5)
    y, back = ChainRulesCore.rrule(fa_matmul, W, x, B, :kp)
    @test y ≈ W * x
    _, ∂W, ∂x, ∂B, ∂mode = back(ȳ)
    @test unthunk(∂W) ≈ ȳ * x'
    @test unthunk(∂B) == unthunk(∂W)
    @test unthunk(∂B) !== unthunk(∂W)           # a copy: no two parameters share one array
    @test unthunk(∂x) ≈ B' * ȳ                  # the signal is FA's
    @test ∂mode isa NoTangent
    xc, Wc, Bc = randn(rng, 6, 5, 2, 2), randn(rng, 3, 3, 2, 4), randn(rng, 3, 3, 2, 4)
    cdims = DenseConvDims(xc, Wc; flipkernel = true)
    yc, backc = ChainRulesCore.rrule(fa_conv, xc, Wc, Bc, cdims, :kp)
    tc = backc(ones(size(yc)))
    @test unthunk(tc[4]) == unthunk(tc[3]) ≈ ∇conv_filter(xc, ones(size(yc)), cdims)
    @test unthunk(tc[2]) ≈ ∇conv_data(ones(size(yc)), Bc, cdims)
end

@testset "FA, not backprop, through $label ($T)" for (label, grad) in gradient_entry_points(),
                                                      T in (Float32, Float64)
    rng = Xoshiro(2)
    W1, B1, b1 = randn(rng, T, 5, 4), randn(rng, T, 5, 4), randn(rng, T, 5)
    W2, B2, b2 = randn(rng, T, 3, 5), randn(rng, T, 3, 5), randn(rng, T, 3)
    x, y = randn(rng, T, 4, 7), randn(rng, T, 3, 7)
    loss(m, x) = Flux.mse(m(x), y)
    rtol = T == Float32 ? 1e-4 : 1e-10

    fa = Chain(DenseFA(W1, B1, b1, tanh), DenseFA(W2, B2, b2))
    bp = Chain(Dense(copy(W1), copy(b1), tanh), Dense(copy(W2), copy(b2)))
    gfa, gxfa = grad(loss, fa, x)
    gbp, gxbp = grad(loss, bp, x)

    want = by_hand(W1, b1, W2, b2, B1, B2, x, y)
    @test isapprox(gfa.layers[1].weight, want.W1; rtol)
    @test isapprox(gfa.layers[1].bias, want.b1; rtol)
    @test isapprox(gfa.layers[2].weight, want.W2; rtol)
    @test isapprox(gfa.layers[2].bias, want.b2; rtol)
    @test isapprox(gxfa, want.x; rtol)
    @test eltype(gfa.layers[1].weight) == T
    @test no_gradient(gfa.layers[1].feedback)
    @test no_gradient(gfa.layers[2].feedback)

    # the top layer's gradient is the true one; below it FA and backprop part ways
    @test isapprox(gfa.layers[2].weight, gbp.layers[2].weight; rtol)
    @test !isapprox(gfa.layers[1].weight, gbp.layers[1].weight; rtol = 0.1)
    @test !isapprox(gxfa, gxbp; rtol = 0.1)
    @test isapprox(gxbp, by_hand(W1, b1, W2, b2, W1, W2, x, y).x; rtol)  # the AD itself works

    # mode :bp is exact backprop: ∂weight is ȳxᵀ and nothing more, ∂x uses the weights
    bpfa = Chain(DenseFA(W1, B1, b1, tanh, :bp), DenseFA(W2, B2, b2, identity, :bp))
    gbpfa, gxbpfa = grad(loss, bpfa, x)
    @test isapprox(gbpfa.layers[1].weight, gbp.layers[1].weight; rtol)
    @test isapprox(gbpfa.layers[1].bias, gbp.layers[1].bias; rtol)
    @test isapprox(gbpfa.layers[2].weight, gbp.layers[2].weight; rtol)
    @test isapprox(gxbpfa, gxbp; rtol)

    # mode :kp has FA's signals, and each feedback receives its weight's gradient
    kp = Chain(DenseFA(W1, B1, b1, tanh, :kp), DenseFA(W2, B2, b2, identity, :kp))
    gkp, gxkp = grad(loss, kp, x)
    @test isapprox(gkp.layers[1].weight, want.W1; rtol)
    @test isapprox(gkp.layers[2].weight, want.W2; rtol)
    @test isapprox(gxkp, want.x; rtol)
    @test gkp.layers[1].feedback == gkp.layers[1].weight
    @test gkp.layers[2].feedback == gkp.layers[2].weight
end

@testset "softmax cross-entropy: Flux.logitcrossentropy is the oracle's, through $label" for
        (label, grad) in gradient_entry_points()
    rng = Xoshiro(40)
    W1, B1, b1 = randn(rng, 5, 4), randn(rng, 5, 4), randn(rng, 5)
    W2, B2, b2 = randn(rng, 3, 5), randn(rng, 3, 5), randn(rng, 3)
    x = randn(rng, 4, 7)
    y = Float64.(Flux.onehotbatch(rand(rng, 1:3, 7), 1:3))  # one-hot columns
    model = Chain(DenseFA(W1, B1, b1, tanh), DenseFA(W2, B2, b2))
    z = W2 * tanh.(W1 * x .+ b1) .+ b2
    @test Flux.logitcrossentropy(model(x), y) ≈ -sum(y .* log.(softmax_columns(z))) / 7
    g, gx = grad((m, x) -> Flux.logitcrossentropy(m(x), y), model, x)
    want = by_hand(W1, b1, W2, b2, B1, B2, x, y; loss = :ce)
    @test g.layers[1].weight ≈ want.W1 && g.layers[1].bias ≈ want.b1
    @test g.layers[2].weight ≈ want.W2 && g.layers[2].bias ≈ want.b2
    @test gx ≈ want.x
end

@testset "each mode's B, through $label" for (label, grad) in gradient_entry_points()
    rng = Xoshiro(3)
    W, R, x = randn(rng, 3, 4), randn(rng, 3, 4), randn(rng, 4, 2)
    for mode in FA_MODES  # ∂x goes through that mode's B, ∂weight stays ȳxᵀ
        layer = DenseFA(W, R, false, identity, mode)
        gl, gx = grad((l, x) -> sum(l(x)), layer, x)
        @test gl.weight ≈ ones(3, 2) * x'
        if mode === :kp
            @test gl.feedback == gl.weight
        else
            @test no_gradient(gl.feedback)
        end
        if mode === :brsf  # B is redrawn: only its shape and its difference from W are fixed
            @test size(gx) == size(x)
            @test !isapprox(gx, W' * ones(3, 2); rtol = 0.1)
        else
            @test gx ≈ feedback_matrix(mode, W, R)' * ones(3, 2)
        end
    end
    # feedback_matrix carries no derivative, in any mode (in :fa, :kp and :bp too, where its
    # value equals an argument: without the mark that would pass the cotangent on)
    for mode in FA_MODES
        gW, gR = grad((W, R) -> sum(feedback_matrix(mode, W, R)), W, R)
        @test no_gradient(gW) && no_gradient(gR)
    end
    # the input check runs (and raises) under every backend
    @test_throws DimensionMismatch grad((l, x) -> sum(l(x)), DenseFA(W, R), randn(rng, 5, 2))
end

@testset "a training step through $label keeps feedback" for (label, grad) in gradient_entry_points()
    rng = Xoshiro(4)
    x, y = randn(rng, Float32, 4, 8), randn(rng, Float32, 3, 8)
    models = (Chain(DenseFA(4 => 5, tanh; rng), DenseFA(5 => 3; rng)),
              DFAChain(DenseFA(4 => 5, tanh; rng), DenseFA(5 => 5, tanh; rng), DenseFA(5 => 3; rng); rng))
    for model in models
        feedback = [copy(l.feedback) for l in model.layers]
        weights = [copy(l.weight) for l in model.layers]
        direct = model isa DFAChain ? copy(model.direct_feedback) : nothing
        want = Flux.gradient(m -> Flux.mse(m(x), y), model)[1]  # Zygote
        opt = Flux.setup(Descent(0.1f0), model)
        g = grad(m -> Flux.mse(m(x), y), model)[1]
        Flux.update!(opt, model, g)
        for (l, fb, w, gw) in zip(model.layers, feedback, weights, want.layers)
            @test l.feedback == fb
            @test isapprox(l.weight, w .- 0.1f0 .* gw.weight; rtol = 1e-5)
        end
        model isa DFAChain && @test model.direct_feedback == direct
    end
end

@testset "KP: under Descent + WeightDecay, W - B shrinks by (1 - ηλ) per step" begin
    rng = Xoshiro(8)
    model = Chain(DenseFA(4 => 5, tanh; mode = :kp, rng), DenseFA(5 => 3; mode = :kp, rng))
    @test keys(Flux.trainable(model.layers[1])) == (:weight, :bias, :feedback)
    @test keys(Flux.trainable(DenseFA(4 => 5; mode = :kp, bias = false))) == (:weight, :bias, :feedback)
    η, λ = 0.1f0, 0.05f0
    opt = Flux.setup(OptimiserChain(WeightDecay(λ), Descent(η)), model)
    @test opt.layers[1].feedback isa Flux.Optimisers.Leaf  # optimiser state for B in KP
    x, y = randn(rng, Float32, 4, 8), randn(rng, Float32, 3, 8)
    for _ in 1:3
        gaps = [l.weight .- l.feedback for l in model.layers]
        weights = [copy(l.weight) for l in model.layers]
        g = Flux.gradient(m -> Flux.mse(m(x), y), model)[1]
        Flux.update!(opt, model, g)
        for (l, gap, w, gl) in zip(model.layers, gaps, weights, g.layers)
            @test l.weight .- l.feedback ≈ (1 - η * λ) .* gap
            @test l.weight ≈ w .- η .* (gl.weight .+ λ .* w)
        end
    end
end

@testset "DFA: hand-computed gradients through $label ($T)" for (label, grad) in gradient_entry_points(),
                                                                  T in (Float32, Float64)
    rng = Xoshiro(30)
    W1, F1, b1 = randn(rng, T, 6, 4), randn(rng, T, 6, 4), randn(rng, T, 6)
    W2, F2, b2 = randn(rng, T, 5, 6), randn(rng, T, 5, 6), randn(rng, T, 5)
    W3, F3, b3 = randn(rng, T, 3, 5), randn(rng, T, 3, 5), randn(rng, T, 3)
    B1, B2 = randn(rng, T, 3, 6), randn(rng, T, 3, 5)  # (C, h_l)
    Wt, Ft = randn(rng, T, 3, 6), randn(rng, T, 3, 6)  # a top layer right after the first
    x, y = randn(rng, T, 4, 7), randn(rng, T, 3, 7)
    loss(m, x) = Flux.mse(m(x), y)
    rtol = T == Float32 ? 1e-4 : 1e-10

    layers() = (DenseFA(W1, F1, b1, tanh), DenseFA(W2, F2, b2, tanh), DenseFA(W3, F3, b3))
    dfa = DFAChain(layers(), hcat(B1, B2))
    @test direct_feedback_of(dfa, 1) == B1 && direct_feedback_of(dfa, 2) == B2
    @test dfa(x) ≈ Chain(layers()...)(x)  # the forward pass is the chain's
    g, gx = grad(loss, dfa, x)
    want = by_hand_dfa(W1, b1, W2, b2, W3, b3, F1, B1, B2, x, y)
    @test isapprox(g.layers[1].weight, want.W1; rtol) && isapprox(g.layers[1].bias, want.b1; rtol)
    @test isapprox(g.layers[2].weight, want.W2; rtol) && isapprox(g.layers[2].bias, want.b2; rtol)
    @test isapprox(g.layers[3].weight, want.W3; rtol) && isapprox(g.layers[3].bias, want.b3; rtol)
    @test isapprox(gx, want.x; rtol)
    @test no_gradient(g.direct_feedback)
    @test all(no_gradient(g.layers[i].feedback) for i in 1:3)

    # the top layer's gradient is the true one; below it DFA is neither FA nor backprop
    fa = Chain(layers()...)
    bp = Chain(Dense(copy(W1), copy(b1), tanh), Dense(copy(W2), copy(b2), tanh), Dense(copy(W3), copy(b3)))
    gfa, gxfa = grad(loss, fa, x)
    gbp, gxbp = grad(loss, bp, x)
    @test isapprox(g.layers[3].weight, gbp.layers[3].weight; rtol)
    for i in 1:2
        @test !isapprox(g.layers[i].weight, gfa.layers[i].weight; rtol = 0.1)
        @test !isapprox(g.layers[i].weight, gbp.layers[i].weight; rtol = 0.1)
    end
    @test !isapprox(gx, gxfa; rtol = 0.1) && !isapprox(gx, gxbp; rtol = 0.1)

    # two layers whose B_1 is the top layer's feedback: DFA is exactly FA, input gradient included
    two = DFAChain((DenseFA(W1, F1, b1, tanh), DenseFA(Wt, Ft, b3)), copy(Ft))
    gtwo, gxtwo = grad(loss, two, x)
    gfa2, gxfa2 = grad(loss, Chain(two.layers...), x)
    @test isapprox(gtwo.layers[1].weight, gfa2.layers[1].weight; rtol)
    @test isapprox(gtwo.layers[2].weight, gfa2.layers[2].weight; rtol)
    @test isapprox(gxtwo, gxfa2; rtol)
end

@testset "DFA: the rules, one at a time" begin
    rng = Xoshiro(31)
    W, x, ȳ = randn(rng, 3, 4), randn(rng, 4, 5), randn(rng, 3, 5)
    y, back = ChainRulesCore.rrule(dfa_matmul, W, x)
    @test y ≈ W * x
    _, ∂W, ∂x = back(ȳ)
    @test unthunk(∂W) ≈ ȳ * x'
    @test ∂x isa NoTangent                        # nothing travels from layer to layer
    # dfa_conv: the true ∂weight (against loops written from the definition), nothing to x
    xc, Wc = randn(rng, 5, 4, 2, 3), randn(rng, 2, 3, 2, 4)
    cdims = DenseConvDims(xc, Wc; padding = (1, 0, 0, 1), flipkernel = true)
    yc, backc = ChainRulesCore.rrule(dfa_conv, xc, Wc, cdims)
    @test yc ≈ crosscor_loops(xc, Wc, (1, 1), (1, 0, 0, 1), (1, 1), 1) ≈ dfa_conv(xc, Wc, cdims)
    ȳc = randn(rng, size(yc))
    tc = backc(ȳc)
    @test length(tc) == 4 && tc[1] isa NoTangent && tc[2] isa NoTangent && tc[4] isa NoTangent
    @test unthunk(tc[3]) ≈ weight_grad_loops(xc, ȳc, size(Wc), (1, 1), (1, 0, 0, 1), (1, 1), 1)
    # dfa_output: z (a copy, never z itself) and, to each hidden output, its B_lᵀ e, reshaped
    h1, h2, D = randn(rng, 6, 5), randn(rng, 4, 5), randn(rng, 3, 10)
    z = W * h2
    y, back = ChainRulesCore.rrule(dfa_output, z, D, h1, h2)
    @test y == z && y !== z && dfa_output(z, D, h1, h2) !== z
    t = back(ȳ)
    @test length(t) == 5 && t[1] isa NoTangent && t[3] isa NoTangent
    @test t[2] == ȳ                               # the top layer's own error goes on down
    @test t[4] ≈ D[:, 1:6]' * ȳ                   # B_1ᵀ e
    @test t[5] ≈ D[:, 7:10]' * ȳ                  # B_2ᵀ e
    yv, backv = ChainRulesCore.rrule(dfa_output, z[:, 1], D, h1[:, 1], h2[:, 1])
    @test yv == z[:, 1]
    @test backv(ȳ[:, 1])[4] ≈ D[:, 1:6]' * ȳ[:, 1]
    # a conv-shaped hidden output (w, h, channels, batch) gets its column-major slice, reshaped;
    # a conv-shaped top: e is its per-sample column-major flatten
    h4, D4 = randn(rng, 2, 3, 2, 5), randn(rng, 3, 6 + 12)
    t4 = ChainRulesCore.rrule(dfa_output, z, D4, h1, h4)[2](ȳ)
    @test size(t4[5]) == size(h4)
    @test t4[5] ≈ reshape(D4[:, 7:18]' * ȳ, 2, 3, 2, 5)
    @test vec(t4[5][:, :, :, 2]) ≈ D4[:, 7:18]' * ȳ[:, 2]
    zc, ēc = randn(rng, 2, 2, 3, 5), randn(rng, 2, 2, 3, 5)   # C = 12 outputs per sample
    Dc = randn(rng, 12, 6)
    tz = ChainRulesCore.rrule(dfa_output, zc, Dc, h1)[2](ēc)
    @test tz[2] == ēc
    @test tz[4] ≈ Dc' * reshape(ēc, 12, 5)
    @test_throws DimensionMismatch dfa_output(z, randn(rng, 3, 9), h1, h2)
    @test_throws DimensionMismatch dfa_output(z, D, h1, randn(rng, 4, 4))   # batch sizes differ
end

@testset "DFAChain: constructors, training state, Functors, errors" begin
    rng = Xoshiro(32)
    hidden = (DenseFA(4 => 6, tanh; rng), DenseFA(6 => 5, tanh; rng))
    top = DenseFA(5 => 3; rng)
    m = DFAChain(hidden..., top; rng = Xoshiro(1))
    @test size(m.direct_feedback) == (3, 11) && eltype(m.direct_feedback) == Float32
    @test size(direct_feedback_of(m, 1)) == (3, 6) && size(direct_feedback_of(m, 2)) == (3, 5)
    @test maximum(abs, direct_feedback_of(m, 1)) <= sqrt(6 / (3 + 6))  # Glorot uniform, (C, h_l)
    @test maximum(abs, direct_feedback_of(m, 2)) <= sqrt(6 / (3 + 5))
    @test DFAChain(hidden..., top; rng = Xoshiro(1)).direct_feedback == m.direct_feedback  # seeded
    @test DFAChain(Chain(hidden..., top); rng = Xoshiro(1)).direct_feedback == m.direct_feedback
    @test_throws ArgumentError direct_feedback_of(m, 3)
    @test keys(Flux.trainable(m)) == (:layers,)
    opt = Flux.setup(Adam(0.01), m)
    @test !(opt.direct_feedback isa Flux.Optimisers.Leaf)    # no optimiser state for the B_l
    m64 = f64(m)
    @test m64 isa DFAChain && eltype(m64.direct_feedback) == Float64
    @test m64.direct_feedback ≈ m.direct_feedback
    @test DFAChain(f64.(hidden)..., f64(top)).direct_feedback isa Matrix{Float64}
    copied = fmap(a -> a isa AbstractArray ? copy(a) : a, m)
    @test copied.direct_feedback == m.direct_feedback && copied.direct_feedback !== m.direct_feedback
    single = DFAChain(top)                         # one layer: an ordinary FA layer
    x = randn(rng, Float32, 5, 2)
    @test size(single.direct_feedback) == (3, 0) && single(x) ≈ top(x)
    @test sprint(show, m) == "DFAChain(DenseFA(4 => 6, tanh), DenseFA(6 => 5, tanh), DenseFA(5 => 3); direct_feedback=3×11)"
    @test_throws DimensionMismatch DFAChain((hidden[1], top), zeros(Float32, 3, 6))  # 6 => 5 missing
    @test_throws DimensionMismatch DFAChain((hidden..., top), zeros(Float32, 3, 10))
    @test_throws ArgumentError DFAChain((Dense(4 => 3),), zeros(Float32, 3, 0))
    @test_throws ArgumentError DFAChain()
end

"""The tiny CNN of the "DFA in a CNN" testset, in element type `T`: `ConvFA((2, 2), 1 => 2, tanh)`,
`MeanPool((2, 1))`, `ConvFA((1, 2), 2 => 2, tanh)`, `Flux.flatten`, `DenseFA(4 => 3, tanh)`,
`DenseFA(3 => 2)`, on `x` of size (3, 4, 1, 2) (WHCN), with the direct feedback matrices `D` and
the gradients of `Flux.mse(model(x), y)` under DFA, all written out from pyfa's numpy oracle:
`pyfa.reference.cnn_gradients(layers, x_nchw, y, "dfa", loss="mse")` on the NCHW twins of these
arrays (each array here is the numpy one crossed as `a.T`, every axis reversed; dense matrices as
they are; `D` is `hcat` of each numpy `B_l.reshape(C, -1)`, B_l of shape (C, out_ch, H_out, W_out)
for a conv layer, (C, out) for a dense one). The inputs are multiples of 1/8, exact in Float32."""
function dfa_cnn_case(::Type{T}) where {T}
    x = reshape(T[0.625, 1.0, 0.75, -0.625, -0.875, 0.0, 0.5, 0.25, 1.125, 0.5, 0.375, -0.5, -0.625, 0.875, 0.0, 0.5, -0.875, -0.25, -0.75, -0.5, 0.5, -0.875, -0.375, 0.125], 3, 4, 1, 2)
    y = T[0.625 1.125; 0.25 0.875]
    W1, F1, b1 = reshape(T[-0.375, -0.125, -0.125, 0.25, -0.25, 0.125, 0.0, 0.25], 2, 2, 1, 2), reshape(T[0.125, 1.0, -0.375, 0.75, -0.25, -0.625, 0.75, -0.25], 2, 2, 1, 2), T[-0.25, -0.875]
    W2, F2, b2 = reshape(T[-1.25, 0.375, -0.75, 0.5, 1.125, -0.125, -0.625, 0.25], 1, 2, 2, 2), reshape(T[0.5, -0.125, 0.0, 0.75, 0.75, 0.375, -0.5, -0.0], 1, 2, 2, 2), T[0.375, -0.125]
    W3, F3, b3 = T[-0.375 -0.5 -0.375 -0.375; -0.25 0.625 -0.5 0.5; 0.25 0.125 -0.5 -0.25], T[1.125 0.0 0.375 0.375; 0.625 -0.125 -0.375 -0.0; -0.125 0.5 0.125 0.125], T[0.125, 0.75, -0.375]
    W4, F4, b4 = T[-0.25 0.5 -0.125; 0.25 -0.375 0.0], T[0.25 -0.75 -0.375; 0.25 1.375 0.25], T[-0.0, -0.5]
    D = T[0.25 -1.5 -0.0 -0.25 -0.25 1.375 -1.5 -0.0 0.0 0.25 -1.0 -0.25 -0.5 -0.5 0.125 -0.0 -1.75 -0.5 -0.125; -0.875 -0.125 0.125 0.125 -0.125 0.125 0.125 0.25 0.0 -1.125 -0.5 0.25 0.5 0.25 -0.25 0.125 -1.375 -0.25 0.125]
    layers(mode) = (ConvFA(W1, F1, b1, tanh; mode), MeanPool((2, 1)), ConvFA(W2, F2, b2, tanh; mode),
                    Flux.flatten, DenseFA(W3, F3, b3, tanh, mode), DenseFA(W4, F4, b4, identity, mode))
    want = (loss = 1.1677810474487818,
            W1 = reshape(T[0.5361934825676415, 0.5271377274303548, -0.34066478983888354, -0.8999475322969437, -1.3997378878404163, -0.24689218212985195, -0.26970366536844503, 0.6277679564680292], 2, 2, 1, 2),
            b1 = T[0.81057466858587, 1.7272348484057138],
            W2 = reshape(T[0.048792928563282385, 0.028916069775497075, 0.162993086749592, 0.15912872131003158, -0.13692985661119345, 0.041044921259930776, -0.09480573011797945, -0.047281191146876955], 1, 2, 2, 2),
            b2 = T[-0.24284023901829913, 0.09073279502658213],
            W3 = T[2.0800115076238694 0.7981396867634347 -0.8459382859647092 0.42736608233302864; 0.2035480594734045 0.0707743476645429 -0.08364356972549246 0.04377658478771108; -0.10281868242268202 -0.03602420236478253 0.04221891166866246 -0.02203994939194699],
            b3 = T[2.4507825962715595, 0.23848387356192075, -0.12051621548113084],
            W4 = T[0.13287053993197723 -0.33800378659518276 -0.004718807159593166; 0.394461341844535 -1.063973126861666 -0.009629687306176226],
            b4 = T[-0.4401209453677243, -1.4046451054767166],
            x = reshape(T[0.02183491287561907, 0.2644681855337755, 0.206352055243571, -0.07359637448357839, -0.11348289905784448, -0.19194846508616703, -0.013996151902755261, 0.27910338469764545, -0.2702558315757031, 0.11481317841875649, 0.03379995319969534, -0.1041829168430789, 0.02405885372068342, 0.5396544203454219, 0.49504441426350676, -0.08432366448487477, -0.10004058593678505, -0.09461088528865141, -0.040249630089192225, 0.33658962783285307, -0.6791010316610073, 0.2300728201729973, 0.17569601486085135, -0.3875504500290766], 3, 4, 1, 2))
    return (; x, y, D, layers, want)
end

@testset "DFA in a CNN: the numpy oracle's gradients, through $label ($T)" for
        (label, grad) in gradient_entry_points(), T in (Float32, Float64)
    c = dfa_cnn_case(T)
    rtol = T == Float32 ? 1e-4 : 1e-10
    model = DFAChain(c.layers(:fa), c.D)
    loss(m, x) = Flux.mse(m(x), c.y)
    @test model(c.x) ≈ Chain(c.layers(:fa)...)(c.x)      # the forward pass is the chain's
    @test isapprox(loss(model, c.x), c.want.loss; rtol)
    g, gx = grad(loss, model, c.x)
    for (i, w, b) in ((1, c.want.W1, c.want.b1), (3, c.want.W2, c.want.b2),
                      (5, c.want.W3, c.want.b3), (6, c.want.W4, c.want.b4))
        @test isapprox(g.layers[i].weight, w; rtol, atol = 1e-6)
        @test isapprox(g.layers[i].bias, b; rtol, atol = 1e-6)
        @test eltype(g.layers[i].weight) == T
        @test no_gradient(g.layers[i].feedback)
    end
    @test isapprox(gx, c.want.x; rtol, atol = 1e-6)
    @test no_gradient(g.direct_feedback)
    # the top layer's gradient is the true one; below it DFA is neither FA nor backprop
    gfa, gxfa = grad(loss, Chain(c.layers(:fa)...), c.x)
    gbp, gxbp = grad(loss, Chain(c.layers(:bp)...), c.x)
    @test isapprox(g.layers[6].weight, gbp.layers[6].weight; rtol)
    for i in (1, 3, 5)
        @test !isapprox(g.layers[i].weight, gfa.layers[i].weight; rtol = 0.1)
        @test !isapprox(g.layers[i].weight, gbp.layers[i].weight; rtol = 0.1)
    end
    @test !isapprox(gx, gxfa; rtol = 0.1) && !isapprox(gx, gxbp; rtol = 0.1)
end

@testset "DFA in a CNN: a conv top layer, by hand, through $label" for (label, grad) in gradient_entry_points()
    # ConvFA(tanh) → ConvFA (the top, identity). With L = Σ C .* y, e = C, flattened per sample in
    # column-major order (12 outputs per sample); the hidden layer hears reshape(Dᵀ e) .* tanh'.
    rng = Xoshiro(33)
    W1, F1, b1 = randn(rng, 2, 2, 1, 3), randn(rng, 2, 2, 1, 3), randn(rng, 3)
    W2, F2, b2 = randn(rng, 2, 1, 3, 2), randn(rng, 2, 1, 3, 2), randn(rng, 2)
    x = randn(rng, 5, 4, 1, 2)
    model = DFAChain((ConvFA(W1, F1, b1, tanh), ConvFA(W2, F2, b2)), randn(rng, 3 * 3 * 2, 4 * 3 * 3))
    y = model(x)
    @test size(y) == (3, 3, 2, 2)
    C = randn(rng, size(y))
    g, gx = grad((m, x) -> sum(C .* m(x)), model, x)
    h1 = tanh.(crosscor_loops(x, W1, (1, 1), (0, 0, 0, 0), (1, 1), 1) .+ reshape(b1, 1, 1, :, 1))
    e = reshape(C, :, 2)                                    # 18 × batch
    δ1 = reshape(model.direct_feedback' * e, size(h1)) .* (1 .- h1 .^ 2)
    @test g.layers[2].weight ≈ weight_grad_loops(h1, C, size(W2), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    @test g.layers[2].bias ≈ vec(sum(C; dims = (1, 2, 4)))
    @test g.layers[1].weight ≈ weight_grad_loops(x, δ1, size(W1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    @test g.layers[1].bias ≈ vec(sum(δ1; dims = (1, 2, 4)))
    @test gx ≈ input_grad_loops(δ1, F1, size(x), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    @test size(direct_feedback_of(model, 1; input_size = (5, 4, 1))) == (18, 4, 3, 3)
end

@testset "DFAChain with conv layers: constructors, shapes, errors" begin
    c = dfa_cnn_case(Float32)
    layers = c.layers(:fa)
    sample = (3, 4, 1)                       # one sample of x, WHC
    m = DFAChain(layers...; input_size = sample, rng = Xoshiro(1))
    @test size(m.direct_feedback) == (2, 12 + 4 + 3) && eltype(m.direct_feedback) == Float32
    @test DFAChain(Chain(layers...); input_size = sample, rng = Xoshiro(1)).direct_feedback == m.direct_feedback
    for (l, shape, units) in ((1, (2, 2, 3, 2), 12), (2, (2, 1, 2, 2), 4), (3, (2, 3), 3))
        B = direct_feedback_of(m, l; input_size = sample)
        @test size(B) == shape
        @test maximum(abs, B) <= sqrt(6 / (2 + units))        # Glorot uniform, (C, units_l)
    end
    given = DFAChain(layers, c.D)
    @test vec(direct_feedback_of(given, 1; input_size = sample)[2, :, :, :]) == c.D[2, 1:12]
    @test direct_feedback_of(given, 3; input_size = sample) == c.D[:, 17:19]
    @test_throws ArgumentError direct_feedback_of(m, 1)                  # a conv: input_size needed
    @test_throws ArgumentError DFAChain(layers...)                       # likewise
    @test_throws ArgumentError DFAChain(layers...; input_size = (3, 4, 0))
    @test_throws DimensionMismatch DFAChain(layers, zeros(Float32, 3, 19))   # C = 2 (dense top)
    wrong = DFAChain(layers, zeros(Float32, 2, 18))   # conv units: checked on the forward pass
    err = try
        wrong(c.x)
    catch e
        e
    end
    @test err isa DimensionMismatch && occursin("(2, 19)", err.msg)
    @test_throws ArgumentError DFAChain(layers[1:5]..., relu, layers[6])  # an activation layer
    @test_throws ArgumentError DFAChain(layers..., MeanPool((1, 1)))     # the top must be FA
    @test_throws ArgumentError DFAChain((Conv((2, 2), 1 => 2), layers[2:end]...), c.D)
    @test_throws DimensionMismatch DFAChain(layers[1:4]..., layers[6]; input_size = sample)
    # structure before the first layer: passed through, and its input gradient passed back
    flat = DFAChain(Flux.flatten, DenseFA(12 => 4, tanh), DenseFA(4 => 2); rng = Xoshiro(2))
    xf = randn(Float32, 3, 4, 1, 2)
    @test flat(xf) ≈ Chain(flat.layers...)(xf)
    @test size(Flux.gradient(x -> sum(flat(x)), xf)[1]) == size(xf)
    m64 = f64(m)
    @test m64 isa DFAChain && eltype(m64.direct_feedback) == Float64 && m64.layers[2] isa MeanPool
    @test keys(Flux.trainable(m)) == (:layers,)
    @test sprint(show, given) == string(
        "DFAChain(ConvFA((2, 2), 1 => 2, tanh), MeanPool((2, 1)), ConvFA((1, 2), 2 => 2, tanh), ",
        "flatten, DenseFA(4 => 3, tanh), DenseFA(3 => 2); direct_feedback=2×19)")
end

@testset "ConvFA: a case small enough to do by hand" begin
    x = reshape(Float64[1 2 3; 4 5 6; 7 8 9], 3, 3, 1, 1)   # WHCN: x[w, h, channel, sample]
    W = reshape(Float64[1 2; 3 4], 2, 2, 1, 1)
    B = reshape(Float64[0 1; -1 2], 2, 2, 1, 1)
    C = reshape(Float64[1 -1; 2 0], 2, 2, 1, 1)
    layer = ConvFA(W, B, [0.5])
    # cross-correlation: y[i, j] = Σ W[u, v] x[i+u-1, j+v-1] + b (Flux's Conv flips W: 23.5 at [1, 1])
    @test layer(x)[:, :, 1, 1] ≈ [37.5 47.5; 67.5 77.5]
    @test Conv(W, [0.5])(x)[1, 1, 1, 1] ≈ 23.5
    gl, gx = Flux.gradient((l, x) -> sum(C .* l(x)), layer, x)
    @test gl.weight[:, :, 1, 1] ≈ [7 9; 13 15]              # Σ C[i, j] x[i+u-1, j+v-1]
    @test gl.bias ≈ [2.0]
    @test gx[:, :, 1, 1] ≈ [0 1 -1; -1 5 -2; -2 4 0]        # C[i, j] B placed at (i, j), summed
    gbp = Flux.gradient(x -> sum(C .* ConvFA(W, B, [0.5]; mode = :bp)(x)), x)[1]
    @test gbp[:, :, 1, 1] ≈ [1 1 -2; 5 5 -4; 6 8 0]         # the same with W: backprop
end

@testset "ConvFA: every mode against loops written from the definition, through $label ($T)" for
        (label, grad) in gradient_entry_points(), T in (Float32, Float64)
    rng = Xoshiro(20)
    rtol = T == Float32 ? 1e-4 : 1e-10
    for (stride, pad, dilation, groups) in (((1, 1), (0, 0, 0, 0), (1, 1), 1),
                                            ((2, 1), (1, 1, 0, 2), (1, 2), 2))
        W = randn(rng, T, 3, 2, 4 ÷ groups, 6)      # (kw, kh, in ÷ groups, out), in = 4
        B, b = randn(rng, T, size(W)), randn(rng, T, 6)
        x = randn(rng, T, 7, 6, 4, 2)
        for mode in (:fa, :bp, :usf, :frsf, :kp)
            layer = ConvFA(W, B, b; stride, pad, dilation, groups, mode)
            y = layer(x)
            @test isapprox(y, crosscor_loops(x, W, stride, pad, dilation, groups) .+
                              reshape(b, 1, 1, :, 1); rtol)
            C = randn(rng, T, size(y))
            gl, gx = grad((l, x) -> sum(C .* l(x)), layer, x)
            @test isapprox(gl.weight, weight_grad_loops(x, C, size(W), stride, pad, dilation, groups); rtol)
            @test isapprox(gl.bias, vec(sum(C; dims = (1, 2, 4))); rtol)
            M = feedback_matrix(mode, W, B)
            @test isapprox(gx, input_grad_loops(C, M, size(x), stride, pad, dilation, groups); rtol)
            mode === :bp || @test !isapprox(gx, input_grad_loops(C, W, size(x), stride, pad, dilation, groups); rtol = 0.1)
            if mode === :kp
                @test gl.feedback == gl.weight
            else
                @test no_gradient(gl.feedback)
            end
        end
    end
end

@testset "ConvFA: mode :bp is Flux's CrossCor (and Conv, kernel flipped), through $label" for
        (label, grad) in gradient_entry_points()
    rng = Xoshiro(21)
    W, B, b = randn(rng, 3, 3, 2, 4), randn(rng, 3, 3, 2, 4), randn(rng, 4)
    x = randn(rng, 8, 7, 2, 3)
    loss(l, x) = sum(abs2, l(x))
    fa = ConvFA(W, B, b, tanh; stride = 2, pad = 1, mode = :bp)
    cc = CrossCor(copy(W), copy(b), tanh; stride = 2, pad = 1)
    cv = Conv(reverse(W; dims = (1, 2)), copy(b), tanh; stride = 2, pad = 1)
    @test fa(x) ≈ cc(x) ≈ cv(x)
    gfa, gxfa = grad(loss, fa, x)
    gcc, gxcc = grad(loss, cc, x)
    gcv, gxcv = grad(loss, cv, x)
    @test gfa.weight ≈ gcc.weight ≈ reverse(gcv.weight; dims = (1, 2))
    @test gfa.bias ≈ gcc.bias
    @test gxfa ≈ gxcc ≈ gxcv
    # mode :fa: the same weight gradient (one layer), another input gradient: ∇conv_data with B
    gf, gxf = grad(loss, ConvFA(W, B, b, tanh; stride = 2, pad = 1), x)
    @test gf.weight ≈ gcc.weight
    cdims = DenseConvDims(x, W; stride = 2, padding = 1, flipkernel = true)
    δ = 2 .* cc(x) .* (1 .- cc(x) .^ 2)           # ∂L/∂z for L = Σ tanh(z)²
    @test gxf ≈ ∇conv_data(δ, B, cdims)
    @test !isapprox(gxf, gxcc; rtol = 0.1)
    # ConvFA(conv) computes the Conv's function: its kernel, flipped
    conv = Conv((3, 2), 2 => 4, relu; pad = (1, 0), stride = (1, 2))
    converted = ConvFA(conv; mode = :bp)
    @test converted(x) ≈ conv(x)
    @test grad(loss, converted, x)[2] ≈ grad(loss, conv, x)[2]
end

@testset "a small CNN through $label: :bp is backprop, :fa is not" for (label, grad) in gradient_entry_points()
    rng = Xoshiro(50)
    c1w, c1f, c1b = randn(rng, 3, 3, 1, 4), randn(rng, 3, 3, 1, 4), randn(rng, 4) ./ 10
    c2w, c2f, c2b = randn(rng, 3, 3, 4, 6) ./ 4, randn(rng, 3, 3, 4, 6), randn(rng, 6) ./ 10
    dw, df, db = randn(rng, 10, 54) ./ 8, randn(rng, 10, 54), randn(rng, 10) ./ 10
    x = randn(rng, 12, 12, 1, 5)
    y = Float64.(Flux.onehotbatch(rand(rng, 1:10, 5), 1:10))
    cnn(mode) = Chain(ConvFA(c1w, c1f, c1b, relu; pad = 1, mode), MeanPool((2, 2)),
                      ConvFA(c2w, c2f, c2b, relu; pad = 1, mode), MeanPool((2, 2)), Flux.flatten,
                      DenseFA(dw, df, db, identity, mode))
    ref = Chain(CrossCor(copy(c1w), copy(c1b), relu; pad = 1), MeanPool((2, 2)),
                CrossCor(copy(c2w), copy(c2b), relu; pad = 1), MeanPool((2, 2)), Flux.flatten,
                Dense(copy(dw), copy(db)))
    loss(m, x) = Flux.logitcrossentropy(m(x), y)
    @test cnn(:fa)(x) ≈ ref(x)
    gref, gxref = grad(loss, ref, x)
    gbp, gxbp = grad(loss, cnn(:bp), x)
    for i in (1, 3, 6)
        @test gbp.layers[i].weight ≈ gref.layers[i].weight
        @test gbp.layers[i].bias ≈ gref.layers[i].bias
    end
    @test gxbp ≈ gxref
    gfa, gxfa = grad(loss, cnn(:fa), x)
    @test gfa.layers[6].weight ≈ gref.layers[6].weight     # the top layer: true gradient
    @test !isapprox(gfa.layers[1].weight, gref.layers[1].weight; rtol = 0.1)
    @test !isapprox(gfa.layers[3].weight, gref.layers[3].weight; rtol = 0.1)
    @test !isapprox(gxfa, gxref; rtol = 0.1)
    @test all(no_gradient(gfa.layers[i].feedback) for i in (1, 3, 6))
end

@testset "ConvFA: constructors, layout, Functors, errors" begin
    rng = Xoshiro(60)
    layer = ConvFA((3, 2), 4 => 6, relu; stride = 2, pad = 1, groups = 2, mode = :frsf, rng)
    @test size(layer.weight) == (3, 2, 2, 6) == size(layer.feedback)
    @test layer.weight isa Array{Float32, 4} && layer.weight != layer.feedback
    @test layer.bias == zeros(Float32, 6)
    @test layer.stride == (2, 2) && layer.pad == (1, 1, 1, 1) && layer.dilation == (1, 1)
    @test layer.groups == 2 && layer.mode === :frsf && layer.σ === relu
    @test size(layer(rand(Float32, 9, 8, 4, 3))) == (5, 5, 6, 3)
    @test ConvFA((3, 3), 1 => 2; pad = SamePad()).pad == (1, 1, 1, 1)
    @test ConvFA((2, 2), 1 => 2; pad = SamePad()).pad == (1, 0, 1, 0)
    @test ConvFA((3, 3), 1 => 2; pad = (1, 2)).pad == (1, 1, 2, 2)
    @test ConvFA((3, 3), 1 => 2; mode = "usf").mode === :usf
    @test sprint(show, layer) == "ConvFA((3, 2), 4 => 6, relu, pad=1, stride=2, groups=2, mode=:frsf)"
    @test sprint(show, ConvFA((3, 3), 1 => 2; bias = false)) == "ConvFA((3, 3), 1 => 2, bias=false)"
    @test keys(Flux.trainable(layer)) == (:weight, :bias)
    @test keys(Flux.trainable(ConvFA((3, 3), 1 => 2; mode = :kp))) == (:weight, :bias, :feedback)
    opt = Flux.setup(Adam(0.01), layer)
    @test opt.weight isa Flux.Optimisers.Leaf && !(opt.feedback isa Flux.Optimisers.Leaf)
    l64 = f64(layer)
    @test l64 isa ConvFA && l64.feedback isa Array{Float64, 4} && l64.feedback ≈ layer.feedback
    @test l64.mode === :frsf && l64.stride == (2, 2) && l64.groups == 2
    copied = fmap(a -> a isa AbstractArray ? copy(a) : a, layer)
    @test copied.feedback == layer.feedback && copied.feedback !== layer.feedback
    W = rand(Float32, 3, 3, 1, 2)
    tied = ConvFA(W, W)  # the very same array: feedback becomes a copy
    @test tied.weight === W && tied.feedback == W && tied.feedback !== W
    @test eltype(layer(rand(Float64, 9, 8, 4, 1))) == Float32   # as Flux's Conv: input converted
    err = try
        layer(rand(Float32, 9, 8, 3, 1))
    catch e
        e
    end
    @test err isa DimensionMismatch && occursin("ConvFA((3, 2), 4 => 6", err.msg)
    @test_throws DimensionMismatch layer(rand(Float32, 9, 8, 4))       # no batch dimension
    @test_throws DimensionMismatch ConvFA((5, 5), 1 => 1)(rand(Float32, 3, 3, 1, 1))  # too small
    @test_throws DimensionMismatch ConvFA(rand(3, 3, 1, 2), rand(3, 3, 2, 1))
    @test_throws ArgumentError ConvFA((3, 3), 1 => 2; mode = :nope)
    @test_throws ArgumentError ConvFA((3, 3), 3 => 4; groups = 2)
    @test_throws ArgumentError ConvFA((3, 3), 1 => 2; stride = (1, 1, 1))
    @test_throws ArgumentError ConvFA((3, 3), 1 => 2; pad = (1, 1, 1))
end

@testset "PyFA's extension for $name is loaded" for name in AD_READY
    @test Base.get_extension(PyFA, Symbol("PyFA", name, "Ext")) isa Module
end

if "Enzyme" in AD_READY
    @testset "Enzyme: the marks" begin
        layer, x = DenseFA(4 => 3), rand(Float32, 4, 2)
        @test Enzyme.EnzymeRules.inactive(PyFA._check_input, layer, x)
        @test Enzyme.EnzymeRules.inactive(feedback_matrix, :usf, layer.weight, layer.feedback)
        conv, xc = ConvFA((3, 3), 1 => 2), rand(Float32, 5, 5, 1, 1)
        @test Enzyme.EnzymeRules.inactive(PyFA._conv_dims, conv, xc)
        @test Enzyme.EnzymeRules.inactive(PyFA._check_input, conv, xc)
    end
end

if "Mooncake" in AD_READY
    @testset "Mooncake: the marks, and no backprop for types the rules do not take" begin
        layer, x = DenseFA(4 => 3), rand(Float32, 4, 2)
        world = Base.get_world_counter()
        has_rule(sig) = Mooncake.is_primitive(Mooncake.DefaultCtx, Mooncake.ReverseMode, sig, world)
        @test has_rule(Tuple{typeof(PyFA._check_input), typeof(layer), typeof(x)})
        @test has_rule(Tuple{typeof(feedback_matrix), Symbol, Matrix{Float32}, Matrix{Float32}})
        @test has_rule(Tuple{typeof(fa_matmul), Matrix{Float32}, Matrix{Float32}, Matrix{Float32}})
        @test has_rule(Tuple{typeof(fa_matmul), Matrix{Float64}, Vector{Float64}, Matrix{Float64}, Symbol})
        @test has_rule(Tuple{typeof(dfa_matmul), Matrix{Float32}, Matrix{Float32}})
        @test has_rule(Tuple{typeof(dfa_output), Matrix{Float32}, Matrix{Float32}, Matrix{Float32},
                             Array{Float32, 4}})
        conv, xc = ConvFA((3, 3), 1 => 2), rand(Float32, 5, 5, 1, 1)
        cdims = PyFA._conv_dims(conv, xc)
        @test has_rule(Tuple{typeof(PyFA._conv_dims), typeof(conv), typeof(xc)})
        @test has_rule(Tuple{typeof(fa_conv), Array{Float32, 4}, Array{Float32, 4}, Array{Float32, 4},
                             typeof(cdims), Symbol})
        @test has_rule(Tuple{typeof(dfa_conv), Array{Float64, 4}, Array{Float64, 4}, typeof(cdims)})
        # mixed element types, or a view: a clear error, not Mooncake's own derivative (backprop)
        W, B = layer.weight, layer.feedback
        @test_throws ArgumentError Flux.gradient(W -> sum(fa_matmul(W, Float64.(x), B)), AutoMooncake(), W)
        @test_throws ArgumentError Flux.gradient(W -> sum(fa_matmul(view(W, :, :), x, B)), AutoMooncake(), W)
        @test_throws ArgumentError Flux.gradient(W -> sum(dfa_matmul(W, Float64.(x))), AutoMooncake(), W)
        h, D = rand(Float32, 3, 2), rand(Float32, 3, 3)
        @test_throws ArgumentError Flux.gradient(W -> sum(dfa_output(W[1:3, 1:3] * h, D, Float64.(h))),
                                                 AutoMooncake(), W)
        Wc = conv.weight
        @test_throws ArgumentError Flux.gradient(
            W -> sum(fa_conv(Float64.(xc), W, conv.feedback, cdims, :fa)), AutoMooncake(), Wc)
        @test_throws ArgumentError Flux.gradient(W -> sum(dfa_conv(Float64.(xc), W, cdims)),
                                                 AutoMooncake(), Wc)
    end
end

for name in keys(AD_SKIPPED)
    @testset "FA under $name: skipped, see the warning above" begin
        @test_skip name in AD_READY
    end
end

@testset "B is built in the pullback only: a forward pass draws nothing" begin
    for (layer, x) in ((DenseFA(4 => 3; mode = :brsf), rand(Float32, 4, 2)),
                       (ConvFA((3, 3), 1 => 2; mode = :brsf), rand(Float32, 5, 5, 1, 2)))
        Random.seed!(11); untouched = rand()
        Random.seed!(11); layer(x); @test rand() == untouched
        Random.seed!(11); Flux.gradient(l -> sum(l(x)), layer); @test rand() != untouched
    end
end

@testset "feedback_matrix: each mode's B" begin
    rng = Xoshiro(3)
    W, R = randn(rng, 3, 4), randn(rng, 3, 4)
    s = sqrt(2 / (3 + 4))
    # a new array in every mode, never an argument itself (the condition of Mooncake's
    # @zero_derivative and of Enzyme's `inactive`); the rules' internal one returns the stored array
    for (mode, stored) in ((:fa, R), (:kp, R), (:bp, W))
        B = feedback_matrix(mode, W, R)
        @test B == stored && B !== stored && B !== W && B !== R
        @test PyFA._feedback_matrix(mode, W, R) === stored
    end
    for mode in FA_MODES
        B = feedback_matrix(mode, W, R)
        @test B !== W && B !== R
    end
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
    # a conv kernel (kw, kh, in ÷ groups, out): PyTorch's fans, kh·kw·(in/g) + kh·kw·out
    Wc, Rc = randn(rng, 3, 2, 4, 5), randn(rng, 3, 2, 4, 5)
    @test feedback_matrix(:usf, Wc, Rc) ≈ sign.(Wc) .* sqrt(2 / (6 * 4 + 6 * 5))
    @test feedback_matrix(:frsf, Wc, Rc) ≈ abs.(Rc) .* sign.(Wc)
    @test sign.(feedback_matrix(:brsf, Wc, Rc)) == sign.(Wc)
end

@testset "training never touches feedback (but for KP)" begin
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
    # a weight-decaying optimiser (AdamW) leaves a fixed feedback alone too, and trains KP's
    fixed, kp = DenseFA(4 => 3; rng), DenseFA(4 => 3; mode = :kp, rng)
    fb_fixed, fb_kp = copy(fixed.feedback), copy(kp.feedback)
    for layer in (fixed, kp)
        opt = Flux.setup(AdamW(0.01, (0.9, 0.999), 0.1), layer)
        g = Flux.gradient(l -> Flux.mse(l(x), y), layer)[1]
        Flux.update!(opt, layer, g)
    end
    @test fixed.feedback == fb_fixed && kp.feedback != fb_kp
end

@testset "constructors, Functors round trip, f32/f64 keep feedback" begin
    rng = Xoshiro(5)
    layer = DenseFA(3 => 2, tanh; mode = :frsf, rng)
    @test layer.weight isa Matrix{Float32} && layer.feedback isa Matrix{Float32}
    @test layer.weight != layer.feedback
    @test layer.bias == zeros(Float32, 2)
    @test layer.mode === :frsf && layer.σ === tanh
    @test DenseFA(3 => 2; mode = "usf").mode === :usf
    @test DenseFA(3 => 2; mode = :kp).mode === :kp
    @test DenseFA(rand(2, 3), rand(2, 3), false, relu, "bp").mode === :bp
    W = rand(Float32, 2, 3)
    tied = DenseFA(W, W)  # the very same array: feedback becomes a copy, so training cannot move it
    @test tied.weight === W && tied.feedback == W && tied.feedback !== W

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
    @test sprint(show, DenseFA(3 => 2; mode = :kp)) == "DenseFA(3 => 2; mode=:kp)"
end

@testset "input shapes, element types and clear errors" begin
    layer = DenseFA(3 => 2)
    @test size(layer(rand(Float32, 3))) == (2,)
    @test size(layer(rand(Float32, 3, 5))) == (2, 5)
    @test size(layer(rand(Float32, 3, 4, 5))) == (2, 4, 5)
    # as Flux's Dense: the input is converted to the weights' element type
    @test eltype(layer(rand(Float64, 3, 5))) == Float32
    @test eltype(layer([1, 2, 3])) == Float32
    @test eltype(f64(layer)(rand(Float32, 3))) == Float64
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

    @testset "CUDA: ConvFA (through cuDNN) and DFAChain give the CPU's gradients" begin
        rng = Xoshiro(7)
        for (cpu_model, x, y) in (
                (Chain(ConvFA((3, 3), 1 => 4, relu; pad = 1, rng), MeanPool((2, 2)), Flux.flatten,
                       DenseFA(64 => 3; rng)), randn(rng, Float32, 8, 8, 1, 5), randn(rng, Float32, 3, 5)),
                (DFAChain(DenseFA(4 => 6, tanh; rng), DenseFA(6 => 5, tanh; rng), DenseFA(5 => 3; rng); rng),
                 randn(rng, Float32, 4, 8), randn(rng, Float32, 3, 8)))
            gpu_model = gpu(cpu_model)
            g_cpu, gx_cpu = Flux.gradient((m, x) -> Flux.mse(m(x), y), cpu_model, x)
            g_gpu, gx_gpu = Flux.gradient((m, x) -> Flux.mse(m(x), gpu(y)), gpu_model, gpu(x))
            @test isapprox(Array(gx_gpu), gx_cpu; rtol = 1e-3, atol = 1e-5)
            for (gc, gg) in zip(g_cpu.layers, g_gpu.layers)
                gc === nothing && continue
                @test isapprox(Array(gg.weight), gc.weight; rtol = 1e-3, atol = 1e-5)
            end
        end
    end
else
    @info "PyFA: CUDA tests skipped (set PYFA_TEST_CUDA=true on a machine with a working GPU)"
end

end # @testset "PyFA"
