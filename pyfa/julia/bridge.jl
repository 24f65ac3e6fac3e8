# Glue between the Python bridge (pyfa/julia/__init__.py) and the Julia package PyFA.
# pyfa.julia.load() includes this file once into Main. Layout: numpy arrays arrive as zero-copy
# PyArrays with numpy's shape; the Python side passes data as `x.T` of a C-order (batch, features)
# array, which is Flux's (features, batch) column-major layout. Weights are copied into Julia Arrays
# once; data cross as PyArray views and are copied once into a dense Array (a PyArray is no
# StridedArray, so products with it would skip BLAS). Everything returned is a host Array or
# `nothing`; the Python side copies it.
module PyFABridge

using Flux: Flux
using PyFA: DenseFA
using Random: Random

const ACTIVATIONS = Dict{String,Function}(
    "identity" => identity, "relu" => Flux.relu, "tanh" => tanh, "sigmoid" => Flux.sigmoid)

"""A DenseFA layer from numpy arrays (copied): weight and feedback (out, in), bias (out,) or nothing."""
function dense(weight::AbstractMatrix, feedback::AbstractMatrix, bias::Union{Nothing,AbstractVector},
               activation::AbstractString, mode::AbstractString)
    T = eltype(weight)
    b = bias === nothing ? false : Vector{T}(bias)
    return DenseFA(Matrix{T}(weight), Matrix{T}(feedback), b, ACTIVATIONS[activation], Symbol(mode))
end

chain(layers...) = Flux.Chain(layers...)

_host(a::Array) = a
_host(a::AbstractArray) = Array(a)
_host(::Nothing) = nothing

_on_gpu(model) = !(first(model.layers).weight isa Array)
_to_model(model, x) = _on_gpu(model) ? Flux.gpu(Array(x)) : Array(x)

forward(model, x) = _host(model(_to_model(model, x)))

_grad(g, field::Symbol) = g === nothing ? nothing : _host(getfield(g, field))

"""(loss, weight grads, bias grads, input grad) of Flux.mse(model(x), y), each layer's by its rule."""
function gradients(model, x, y)
    xm, ym = _to_model(model, x), _to_model(model, y)
    res = Flux.withgradient((m, xin) -> Flux.mse(m(xin), ym), model, xm)
    gm, gx = res.grad
    layers = gm === nothing ? map(_ -> nothing, model.layers) : gm.layers
    return (res.val, map(g -> _grad(g, :weight), layers), map(g -> _grad(g, :bias), layers), _host(gx))
end

function optimiser(model, name::AbstractString, lr::Real, momentum::Real)
    T = eltype(first(model.layers).weight)
    name == "adam" && return Flux.Adam(T(lr))
    name == "sgd" && return Flux.Descent(T(lr))
    name == "momentum" && return Flux.Momentum(T(lr), T(momentum))
    throw(ArgumentError("unknown optimiser \"$name\"; expected \"adam\", \"sgd\" or \"momentum\""))
end

setup(model, name, lr, momentum) = Flux.setup(optimiser(model, name, lr, momentum), model)

"""One explicit training step on Flux.mse; returns (loss, state, model)."""
function train_step!(model, state, x, y)
    xm, ym = _to_model(model, x), _to_model(model, y)
    res = Flux.withgradient(m -> Flux.mse(m(xm), ym), model)
    state, model = Flux.update!(state, model, res.grad[1])
    return (res.val, state, model)
end

"""Per layer (weight, feedback, bias or nothing), on the host."""
layer_params(model) = map(l -> (_host(l.weight), _host(l.feedback), l.bias === false ? nothing : _host(l.bias)),
                    model.layers)

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
