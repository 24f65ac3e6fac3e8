# Glue between the Python bridge (pyfa/julia/__init__.py) and the Julia package PyFA.
# pyfa.julia.load() includes this file once into Main. Layout: numpy arrays arrive as zero-copy
# PyArrays with numpy's shape; the Python side passes data as `x.T` of a C-order array, every axis
# reversed: (batch, features) becomes Flux's (features, batch), NCHW images become WHCN, and a conv
# weight (out, in ÷ groups, kh, kw) becomes Flux's (kw, kh, in ÷ groups, out), all column-major
# and zero-copy. Dense weights cross as they are ((out, in) in both). Weights are copied into Julia
# Arrays once; data cross as PyArray views and are copied once into a dense Array (a PyArray is no
# StridedArray, so products with it would skip BLAS). Everything returned is a host Array or
# `nothing`; the Python side copies it (reversing the axes back where it reversed them).
#
# Models: a Flux `Chain` of `DenseFA` (modes fa, bp, usf, frsf, brsf, kp), a `DFAChain` of `DenseFA`
# (mode dfa), or a `Chain` of `ConvFA`, pooling, `Flux.flatten` and `DenseFA` (a CNN). Losses:
# "mse" (`Flux.mse`) or "ce" (`Flux.logitcrossentropy`).
#
# AD backends: gradients and training steps take `ad` = "zygote" (Flux's default), "enzyme" or
# "mooncake", passed to Flux as AutoZygote(), AutoEnzyme(), AutoMooncake(). Enzyme and Mooncake
# keep FA only through PyFA's package extensions, so before first use the Python side calls
# `load_ad` (which loads the package and checks that the extension loaded with it) and then
# `check_fa` (which checks, on cases small enough to write down, that every rule gives its own
# answer, not backprop's: the dense product, a convolution, and a DFA chain of conv and dense
# layers). Each answers `nothing` when all is well, else a sentence saying why not.
module PyFABridge

using Flux: Flux
using PyFA: PyFA, ConvFA, DenseFA, DFAChain, fa_matmul
using Random: Random

const AD_BACKENDS = ("zygote", "enzyme", "mooncake")
const AD_EXTENSIONS = Dict("enzyme" => (:Enzyme, :PyFAEnzymeExt), "mooncake" => (:Mooncake, :PyFAMooncakeExt))

"""Flux's ADTypes object for `ad`; an ArgumentError for any other name."""
function adtype(ad::AbstractString)
    ad == "zygote" && return Flux.AutoZygote()
    ad == "enzyme" && return Flux.AutoEnzyme()
    ad == "mooncake" && return Flux.AutoMooncake()
    throw(ArgumentError("unknown AD backend \"$ad\"; expected one of $AD_BACKENDS"))
end

"""Load the package behind `ad` (as `import` would, from Main's environment), which loads PyFA's
extension for it. `nothing` when it is ready, else why not (not installed, failed to load, or
loaded without PyFA's extension)."""
function load_ad(ad::AbstractString)
    adtype(ad)
    ad == "zygote" && return nothing
    pkg, ext = AD_EXTENSIONS[ad]
    Base.find_package(string(pkg)) === nothing &&
        return "$pkg is not installed in this Julia environment ($(Base.active_project()))"
    try
        Base.require(Main, pkg)
    catch err
        return "$pkg is installed but did not load: " * sprint(showerror, err)
    end
    Base.get_extension(PyFA, ext) === nothing && return string(
        pkg, " loaded, but PyFA's extension ", ext, " did not (see Julia's warning): without it ",
        pkg, " would compute backprop, not FA")
    return nothing
end

"""
    check_fa(ad) -> nothing or why not

Whether the AD backend `ad` applies each of PyFA's rules, in Float32 and Float64, on cases whose
FA (or DFA) and backprop answers differ, so that a backend that silently differentiates a rule's
plain body (backprop) cannot pass:

- `fa_matmul`, both argument forms: for `sum(C .* fa_matmul(W, x, B))`, `∂W = C xᵀ` and
  `∂x = Bᵀ C` (backprop's would be `Wᵀ C`);
- `ConvFA` (`fa_conv`): a 2×2 kernel on a 3×3 image, `∂x` the transposed convolution of `C` with
  `B` (backprop's: with `W`) and `∂W` the true one;
- `DFAChain` (`dfa_conv`, `dfa_matmul`, `dfa_output`, and the first layer's `fa_conv`): a conv,
  a hidden conv, flatten, a hidden dense and a dense top layer, every weight gradient and the
  input gradient DFA's (neither the FA chain's nor backprop's).

The expected values are written out (small integers, exact in Float32); those of the conv and
DFA cases are pyfa's numpy oracle's (`pyfa.reference.cnn_gradients`) for these arrays crossed
as the bridge crosses them. `nothing` if every case passes, else what came out of the first that
did not.
"""
function check_fa(ad::AbstractString)
    backend = adtype(ad)
    for T in (Float32, Float64), check in (_check_matmul, _check_conv, _check_dfa)
        why = check(ad, backend, T)
        why === nothing || return why
    end
    return nothing
end

"""Whether `a` is an array of `want`'s size and values (an AD may answer `nothing`)."""
_same(a, want::AbstractArray) = a isa AbstractArray && size(a) == size(want) && isapprox(a, want)

"""Whose answer `got` is: the rule's (`name`'s), backprop's, or neither."""
_which(got, rule::AbstractArray, backprop::AbstractArray, name::AbstractString) =
    _same(got, rule) ? string(name, "'s") : _same(got, backprop) ? "backprop's" :
    string("neither ", name, "'s nor backprop's")

_show(a) = a isa AbstractArray ? string(vec(a)) : repr(a)
_weight(layer_gradient) = layer_gradient === nothing ? nothing : layer_gradient.weight

function _check_matmul(ad::AbstractString, backend, ::Type{T}) where {T}
    W, B = T[1 2; 3 4; 5 6], T[-1 0; 0 1; 2 -2]
    C, x = T[1 -1; 2 0; 0 3], T[1 2; 0 1]
    fa, bp = B' * C, W' * C
    for (form, f) in (("fa_matmul(W, x, B)", (W, x) -> sum(C .* fa_matmul(W, x, B))),
                      ("fa_matmul(W, x, B, :fa)", (W, x) -> sum(C .* fa_matmul(W, x, B, :fa))))
        gW, gx = Flux.gradient(f, backend, W, x)
        _same(gx, fa) && _same(gW, C * x') && continue
        return string(ad, " gave ", form, " in ", T, " the input gradient ", _show(gx),
                      " (", _which(gx, fa, bp, "FA"), ") and weight gradient ", _show(gW),
                      "; FA's are Bᵀ C = ", _show(fa), " and C xᵀ = ", _show(C * x'))
    end
    return nothing
end

function _check_conv(ad::AbstractString, backend, ::Type{T}) where {T}
    x = reshape(T[1 2 3; 4 5 6; 7 8 9], 3, 3, 1, 1)        # WHCN: x[w, h, channel, sample]
    W = reshape(T[1 2; 3 4], 2, 2, 1, 1)
    B = reshape(T[0 1; -1 2], 2, 2, 1, 1)
    C = reshape(T[1 -1; 2 0], 2, 2, 1, 1)
    fa = reshape(T[0 1 -1; -1 5 -2; -2 4 0], 3, 3, 1, 1)  # Σ_ij C[i, j] B placed at (i, j)
    bp = reshape(T[1 1 -2; 5 5 -4; 6 8 0], 3, 3, 1, 1)    # the same with W
    ∂W = reshape(T[7 9; 13 15], 2, 2, 1, 1)                 # Σ_ij C[i, j] x[i+u-1, j+v-1]
    gl, gx = Flux.gradient((l, x) -> sum(C .* l(x)), backend, ConvFA(W, B, false), x)
    gW = _weight(gl)
    _same(gx, fa) && _same(gW, ∂W) && return nothing
    return string(ad, " gave a ConvFA in ", T, " the input gradient ", _show(gx), " (",
                  _which(gx, fa, bp, "FA"), ") and weight gradient ", _show(gW), "; FA's are ",
                  _show(fa), " and ", _show(∂W))
end

function _check_dfa(ad::AbstractString, backend, ::Type{T}) where {T}
    x = reshape(T[-1, 2, 2, -1, -2, 1, 1, 2, 1, 1, 2, 2, 2, 2, 1, 2], 4, 4, 1, 1)
    W1, F1 = reshape(T[-2, -2, 2, -1], 2, 2, 1, 1), reshape(T[1, -1, 2, -2], 2, 2, 1, 1)
    W2, F2 = reshape(T[1, -2, -2, 2], 2, 2, 1, 1), reshape(T[-1, 2, -1, 2], 2, 2, 1, 1)
    W3, F3 = T[2 -1 2 1; 2 -1 1 1; 2 -1 -1 2], T[2 2 -2 2; -2 2 2 2; 2 1 1 1]
    W4, F4 = T[-2 2 2; -2 1 -1], T[1 1 1; -1 -2 2]
    # B_l side by side: the first conv's 9 outputs, the second's 4, the dense layer's 3
    D = T[2 -2 -1 -2 -1 -2 -1 2 -2 1 -2 -2 2 1 -2 -2; -2 1 -2 -2 -1 -2 1 1 2 1 2 2 -1 1 -2 1]
    C = reshape(T[2, -1], 2, 1)
    dfa = (W1 = reshape(T[-27, -14, -30, -22], 2, 2, 1, 1),
           W2 = reshape(T[-3, 9, 24, -2], 2, 2, 1, 1),
           W3 = T[-7 -3 9 -6; 14 6 -18 12; 35 15 -45 30],
           W4 = T[2 -16 -64; -1 8 32],
           x = reshape(T[6, -11, 5, 0, 10, -21, 9, 2, -7, 8, -11, 10, -6, 12, -18, 12], 4, 4, 1, 1))
    fa = (W1 = reshape(T[90, 58, 94, 138], 2, 2, 1, 1),   # the same layers as an FA chain
          x = reshape(T[2, -20, 46, -28, 4, -68, 176, -112, -2, -64, 206, -140, -4, -16, 76, -56], 4, 4, 1, 1))
    bp = (W1 = reshape(T[59, -99, -103, 60], 2, 2, 1, 1),  # ... and under backprop
          x = reshape(T[-24, 36, 36, -24, 84, -130, 4, 56, -84, 192, -103, -10, 24, -80, 78, -22], 4, 4, 1, 1))
    model = DFAChain((ConvFA(W1, F1, false), ConvFA(W2, F2, false), Flux.flatten,
                      DenseFA(W3, F3, false), DenseFA(W4, F4, false)), D)
    g, gx = Flux.gradient((m, x) -> sum(C .* m(x)), backend, model, x)
    gl = g === nothing ? ntuple(_ -> nothing, 5) : g.layers
    gW = map(_weight, (gl[1], gl[2], gl[4], gl[5]))
    all(map(_same, gW, (dfa.W1, dfa.W2, dfa.W3, dfa.W4))) && _same(gx, dfa.x) && return nothing
    what = _same(gW[1], bp.W1) && _same(gx, bp.x) ? "backprop's" :
           _same(gW[1], fa.W1) && _same(gx, fa.x) ? "the FA chain's (the DFA rules were not applied)" :
           "neither DFA's, FA's nor backprop's"
    return string(ad, " gave a DFAChain (conv, conv, flatten, dense, dense) in ", T,
                  " the weight gradients ", join(map(_show, gW), ", "), " and input gradient ",
                  _show(gx), ": ", what, " (DFA's: ", join(map(_show, (dfa.W1, dfa.W2, dfa.W3, dfa.W4)), ", "),
                  " and ", _show(dfa.x), ")")
end

const ACTIVATIONS = Dict{String,Function}(
    "identity" => identity, "relu" => Flux.relu, "tanh" => tanh, "sigmoid" => Flux.sigmoid)

"""A DenseFA layer from numpy arrays (copied): weight and feedback (out, in), bias (out,) or nothing."""
function dense(weight::AbstractMatrix, feedback::AbstractMatrix, bias::Union{Nothing,AbstractVector},
               activation::AbstractString, mode::AbstractString)
    T = eltype(weight)
    b = bias === nothing ? false : Vector{T}(bias)
    return DenseFA(Matrix{T}(weight), Matrix{T}(feedback), b, ACTIVATIONS[activation], Symbol(mode))
end

"""A ConvFA layer from numpy arrays (copied). `weight` and `feedback` arrive as `w.T` of C-order
(out, in ÷ groups, kh, kw) arrays: zero-copy (kw, kh, in ÷ groups, out) views, Flux's layout.
PyTorch's (h, w) pairs become Flux's (w, h) tuples: stride (sw, sh), dilation (dw, dh) and
padding (pw, pw, ph, ph), zero padding at both ends. ConvFA computes cross-correlation, as
PyTorch and the numpy oracle do, so the kernel crosses unflipped."""
function conv_layer(weight::AbstractArray, feedback::AbstractArray,
                    bias::Union{Nothing,AbstractVector}, activation::AbstractString,
                    mode::AbstractString, sh::Integer, sw::Integer, ph::Integer, pw::Integer,
                    dh::Integer, dw::Integer, groups::Integer)
    T = eltype(weight)
    b = bias === nothing ? false : Vector{T}(bias)
    return ConvFA(Array{T,4}(weight), Array{T,4}(feedback), b, ACTIVATIONS[activation];
                  stride = (sw, sh), pad = (pw, pw, ph, ph), dilation = (dw, dh), groups,
                  mode = Symbol(mode))
end

"""Flux's pooling layer for the oracle's `Pool2d(kind, (kh, kw), (sh, sw))` (no padding): the
window and stride in Flux's (w, h) order."""
function pool_layer(kind::AbstractString, kh::Integer, kw::Integer, sh::Integer, sw::Integer)
    kind == "avg" && return Flux.MeanPool((kw, kh); stride = (sw, sh))
    kind == "max" && return Flux.MaxPool((kw, kh); stride = (sw, sh))
    throw(ArgumentError("unknown pooling \"$kind\"; expected \"avg\" or \"max\""))
end

"""`Flux.flatten`: (w, h, c, n) to (w·h·c, n), column-major, which is the oracle's C-order
flatten of (n, c, h, w): feature (c·H + h)·W + w in both."""
flatten_layer() = Flux.flatten

chain(layers...) = Flux.Chain(layers...)

"""A DFAChain of the layers of `chain` (DenseFA, ConvFA, pooling, flatten), with the hidden
layers' direct feedback matrices `B_l`, bottom first, side by side. Each arrives as a (C, units_l)
matrix, not reversed: a dense layer's (C, h_l) as it is, a conv layer's numpy (C, out_ch, H_out,
W_out) as `B.reshape(C, -1)`, whose C-order columns `(c·H + h)·W + w` are exactly the column-major
order of that layer's (w, h, c) output per sample here, the order `dfa_output` hands `B_lᵀ e` back
in. For a conv top, C counts its outputs per sample in the same order."""
function dfa_chain(chain::Flux.Chain, direct::AbstractMatrix...)
    T = eltype(_first_weight(chain))
    top = last(chain.layers)
    C = top isa DenseFA ? size(top.weight, 1) : 0  # a conv top's C is known from the data only
    D = isempty(direct) ? zeros(T, C, 0) : reduce(hcat, map(Matrix{T}, direct))
    return DFAChain(Tuple(chain.layers), D)
end

_host(a::Array) = a
_host(a::AbstractArray) = Array(a)
_host(::Nothing) = nothing

_parametrised(layer) = layer isa Union{DenseFA, ConvFA}
_first_weight(model) = first(l.weight for l in model.layers if _parametrised(l))
_on_gpu(model) = !(_first_weight(model) isa Array)
_to_model(model, x) = _on_gpu(model) ? Flux.gpu(Array(x)) : Array(x)

forward(model, x) = _host(model(_to_model(model, x)))

"""The loss called `name`: "mse" (`Flux.mse`, the mean over every element) or "ce"
(`Flux.logitcrossentropy`: softmax cross-entropy over the classes, dims = 1, averaged over the
batch, for probability (one-hot) targets: the oracle's `ce`)."""
function loss_function(name::AbstractString)
    name == "mse" && return Flux.mse
    name == "ce" && return Flux.logitcrossentropy
    throw(ArgumentError("unknown loss \"$name\"; expected \"mse\" or \"ce\""))
end

"""A layer gradient's `field` on the host, or `nothing` where it has none (Zygote's `nothing`;
`NoTangent` or `false` where the layer has no bias)."""
function _grad(g, field::Symbol)
    g === nothing && return nothing
    v = getfield(g, field)
    return v isa AbstractArray ? _host(v) : nothing
end

"""Per layer of `model`: `nothing` for a layer without parameters (pooling, flatten), else
(weight, bias, feedback) gradients, each a host array or `nothing`."""
function _layer_gradients(model, gm)
    glayers = gm === nothing ? nothing : getfield(gm, :layers)
    return ntuple(length(model.layers)) do i
        g = glayers === nothing ? nothing : glayers[i]
        _parametrised(model.layers[i]) || return nothing
        return (_grad(g, :weight), _grad(g, :bias), _grad(g, :feedback))
    end
end

"""(loss, per-layer gradients as `_layer_gradients` gives them, input gradient) of
`loss(model(x), y)` under the AD backend `ad`, each layer's by its rule. Under Zygote a
feedback that got no gradient is `nothing`; under Enzyme and Mooncake, zeros."""
function gradients(model, x, y, ad::AbstractString = "zygote", loss::AbstractString = "mse")
    xm, ym = _to_model(model, x), _to_model(model, y)
    lossf = loss_function(loss)
    res = Flux.withgradient((m, xin) -> lossf(m(xin), ym), adtype(ad), model, xm)
    gm, gx = res.grad
    return (res.val, _layer_gradients(model, gm), _host(gx))
end

"""The Optimisers rule: "adam" (`Adam(lr)`; with weight decay λ > 0 `AdamW(lr, (0.9, 0.999), λ)`,
PyTorch's AdamW: x ← x − lr·(adam + λx)), "sgd" (`Descent(lr)`) or "momentum" (`Momentum(lr,
momentum)`), the last two with λ > 0 after `WeightDecay(λ)` in an `OptimiserChain` (∂ + λx, as
PyTorch's SGD `weight_decay`, and under plain SGD the oracle's `sgd_step`)."""
function optimiser(model, name::AbstractString, lr::Real, momentum::Real, weight_decay::Real = 0)
    T = eltype(_first_weight(model))
    η, ρ, λ = T(lr), T(momentum), T(weight_decay)
    name in ("adam", "sgd", "momentum") ||
        throw(ArgumentError("unknown optimiser \"$name\"; expected \"adam\", \"sgd\" or \"momentum\""))
    name == "adam" && return iszero(λ) ? Flux.Adam(η) : Flux.AdamW(η, (0.9, 0.999), λ)
    rule = name == "sgd" ? Flux.Descent(η) : Flux.Momentum(η, ρ)
    return iszero(λ) ? rule : Flux.OptimiserChain(Flux.WeightDecay(λ), rule)
end

"""`Flux.setup` with `optimiser(...)`; with weight decay, none on the biases (the oracle's rule:
weights, and in mode kp feedback matrices, decay; biases do not): their rules get λ = 0."""
function setup(model, name, lr, momentum, weight_decay = 0)
    state = Flux.setup(optimiser(model, name, lr, momentum, weight_decay), model)
    iszero(weight_decay) || foreach(_no_bias_decay!, state.layers)
    return state
end

_no_bias_decay!(s) = nothing  # a layer without parameters
_no_bias_decay!(s::NamedTuple) = haskey(s, :bias) ? Flux.adjust!(s.bias; lambda = 0) : nothing

"""One explicit training step on `loss` under the AD backend `ad`; returns (loss, state, model)."""
function train_step!(model, state, x, y, ad::AbstractString = "zygote", loss::AbstractString = "mse")
    xm, ym = _to_model(model, x), _to_model(model, y)
    lossf = loss_function(loss)
    res = Flux.withgradient(m -> lossf(m(xm), ym), adtype(ad), model)
    state, model = Flux.update!(state, model, res.grad[1])
    return (res.val, state, model)
end

"""Per layer: `nothing` (no parameters), or (weight, feedback, bias or nothing) on the host."""
layer_params(model) = map(l -> _parametrised(l) ? _layer_params(l) : nothing, model.layers)
_layer_params(l) = (_host(l.weight), _host(l.feedback), l.bias === false ? nothing : _host(l.bias))

"""A DFAChain's direct feedback matrices side by side, (C, Σ h_l), on the host."""
direct_feedback(model::DFAChain) = _host(model.direct_feedback)

"""Seed Julia's default RNG, which mode :brsf draws its feedback from on every pass."""
seed!(seed::Integer) = (Random.seed!(seed); nothing)

to_gpu(model) = Flux.gpu(model)
to_cpu(model) = Flux.cpu(model)

# ---- the forum reproduction (pyfa/julia/forum.py) ----
# The post ran Chain(DenseFA(50, 60), DenseFA(60, 40), DenseFA(40, 2)) on x = rand(Float32, 50, 64),
# y = rand(Float32, 2, 64) with Flux.Losses.mse, taking the implicit
# `gradient(() -> loss(model(x), y), Flux.params(model))` (deprecated since Flux 0.15; Zygote ignores
# the bare rule in explicit mode just the same). Here the weights, feedback matrices and data come
# from Python so that the gradients can be compared with pyfa's numpy oracle. Biases and
# activations, which the post's layer did not have, live in a separate `BiasAct` layer so that the
# post's `DenseFA` is used exactly as posted.

"""Bias and activation after a forum `DenseFA` (whose layer had neither): `σ.(X .+ b)`."""
struct BiasAct{V, F}
    b::V  # a vector, or `false` for no bias
    σ::F
end
(l::BiasAct)(X) = l.σ.(X .+ l.b)

"""
    forum_gradients(DenseLayer, rrule_calls, x, y, activations, W1, B1, b1, W2, B2, b2, ...)

Run a forum snippet's layer type `DenseLayer` (built as `DenseLayer(W, B)`, with its weight in
field `W`) in a chain on `x` (in, batch) and `y` (out, batch); per layer a weight and a feedback
matrix (out, in) and a bias (out) or `nothing`; `activations` names each layer's activation,
comma-separated. `rrule_calls` is the snippet's counter of how often its rule ran. Returns
`(loss, weight gradients, bias gradients or nothing, input gradient, rrule calls)`.
"""
function forum_gradients(DenseLayer, rrule_calls::Ref{Int}, x, y,
                         activations::AbstractString, params...)
    layers = Any[]
    dense_at, bias_at = Int[], Int[]
    for (i, act) in enumerate(split(activations, ","))
        W, B, b = params[3i - 2], params[3i - 1], params[3i]
        push!(layers, DenseLayer(Matrix{Float32}(W), Matrix{Float32}(B)))
        push!(dense_at, length(layers))
        push!(bias_at, b === nothing ? 0 : length(layers) + 1)
        if b !== nothing || act != "identity"
            push!(layers, BiasAct(b === nothing ? false : Vector{Float32}(b), ACTIVATIONS[act]))
        end
    end
    model = Flux.Chain(layers...)
    X, Y = Matrix{Float32}(x), Matrix{Float32}(y)
    rrule_calls[] = 0
    res = Flux.withgradient((m, X) -> Flux.Losses.mse(m(X), Y), model, X)
    gm, gX = res.grad
    weights = Tuple(gm.layers[j].W for j in dense_at)
    biases = Tuple(k == 0 ? nothing : gm.layers[k].b for k in bias_at)
    return (res.val, weights, biases, gX, rrule_calls[])
end

end # module PyFABridge
