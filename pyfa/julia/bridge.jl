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

end # module PyFABridge
