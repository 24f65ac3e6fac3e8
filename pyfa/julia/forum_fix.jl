# The same post's layer, FIXED: the rule is a method of `ChainRulesCore.rrule`, the function Zygote
# calls, and its arguments are typed `AbstractMatrix` (a CuArray or a juliacall PyArray would not
# match `Matrix`, and Zygote would again fall back to backprop). Everything else is forum_bug.jl's
# text. pyfa.julia.forum includes this file into a fresh module. The post's code is kept as posted
# except for the lines whose comments mention "the post".

using Flux; using Flux: glorot_uniform
using ChainRulesCore; using ChainRulesCore: NoTangent, @thunk

# DenseFA struct
struct DenseFA{M1<:Matrix, M2<:Matrix}
    W::M1 # Weights used in the forward pass
    B::M2 # Weights used in the backwards pass
    function DenseFA(W::M1, B::M2) where {M1<:Matrix, M2<:Matrix}
        new{M1,M2}(W, B)
    end
end

# Initialize DenseFA struct
function DenseFA(in::Integer, out::Integer; init = glorot_uniform)
    W = init(out, in)
    B = init(out, in)
    return DenseFA(W, B)
end

Flux.@layer DenseFA trainable=(W,)  # the post: `@functor DenseFA` and `Flux.trainable(a::DenseFA) = (a.W,)`

(a::DenseFA)(X) = my_matmul(a.W, X, a.B)

function my_matmul(W, X, B)
    return W * X
end

function Base.show(io::IO, l::DenseFA)
    print(io, "DenseFA(", size(l.W, 2), ", ", size(l.W, 1), ")")
end

const RRULE_CALLS = Ref(0)  # not in the post: how often the rule below runs

function ChainRulesCore.rrule(::typeof(my_matmul), W::AbstractMatrix, X::AbstractMatrix, B::AbstractMatrix)
    y = my_matmul(W, X, B)
    RRULE_CALLS[] += 1  # the post printed "==========Using rrule with fixed random feedback weights=========="
    function times_pullback(ΔΩ)
        ∂W = @thunk(ΔΩ * X')
        ∂X = @thunk(B' * ΔΩ) # Use random feedback weight matrix B
        return (NoTangent(), ∂W, ∂X, NoTangent())
    end
    return y, times_pullback
end

# ------------------------------------------------------------------------------------------------
# pyfa harness, not from the post. The post ran Chain(DenseFA(50, 60), DenseFA(60, 40),
# DenseFA(40, 2)) on x = rand(Float32, 50, 64), y = rand(Float32, 2, 64) with
# loss = Flux.Losses.mse, taking the implicit `gradient(() -> loss(model(x), y), Flux.params(model))`
# (deprecated since Flux 0.15; Zygote ignores the bare rule in explicit mode just the same). Here the
# weights, feedback matrices and data come from Python (seeded numpy) so that the gradients can be
# compared with pyfa's numpy oracle. Biases and activations, which the post's layer did not have,
# live in a separate `BiasAct` layer so that the post's `DenseFA` stays as it was.
const loss = Flux.Losses.mse

struct BiasAct{V, F}
    b::V  # a vector, or `false` for no bias
    σ::F
end
(l::BiasAct)(X) = l.σ.(X .+ l.b)

const ACTIVATIONS = Dict("identity" => identity, "relu" => relu, "tanh" => tanh, "sigmoid" => sigmoid)

"""
    pyfa_gradients(x, y, activations, W1, B1, b1, W2, B2, b2, ...)

`x` (in, batch) and `y` (out, batch); per layer a weight and a feedback matrix (out, in) and a bias
(out) or `nothing`; `activations` names each layer's activation, comma-separated. Returns
`(loss, weight gradients, bias gradients or nothing, input gradient, rrule calls)`.
"""
function pyfa_gradients(x, y, activations::AbstractString, params...)
    layers = Any[]
    dense_at, bias_at = Int[], Int[]
    for (i, act) in enumerate(split(activations, ","))
        W, B, b = params[3i - 2], params[3i - 1], params[3i]
        push!(layers, DenseFA(Matrix{Float32}(W), Matrix{Float32}(B)))
        push!(dense_at, length(layers))
        push!(bias_at, b === nothing ? 0 : length(layers) + 1)
        if b !== nothing || act != "identity"
            push!(layers, BiasAct(b === nothing ? false : Vector{Float32}(b), ACTIVATIONS[act]))
        end
    end
    model = Chain(layers...)
    X, Y = Matrix{Float32}(x), Matrix{Float32}(y)
    RRULE_CALLS[] = 0
    res = Flux.withgradient((m, X) -> loss(m(X), Y), model, X)
    gm, gX = res.grad
    weights = Tuple(gm.layers[j].W for j in dense_at)
    biases = Tuple(k == 0 ? nothing : gm.layers[k].b for k in bias_at)
    return (res.val, weights, biases, gX, RRULE_CALLS[])
end
