# The Julia Discourse post "Custom rrule for Feedback Alignment" (discourse.julialang.org, topic
# 72159), with its bug left in ON PURPOSE: `function rrule(...)` after `using ChainRulesCore` defines a
# NEW function `rrule` in this module. Zygote only calls methods of `ChainRulesCore.rrule`, never sees
# this one, and differentiates `W * X` itself: plain backprop, no error, no warning. `pyfa lint`
# reports it (PFA001); do not "fix" this file. forum_fix.jl differs only in the rule's signature line.
# pyfa.julia.forum includes this file into a fresh module and runs it with the bridge's
# `forum_gradients` (pyfa/julia/bridge.jl). The post's code is kept as posted except
# for the lines whose comments (at their end, or on the line above) mention "the post";
# tests/test_julia_forum.py checks every other line against the post.

# the post: `using Flux; using Flux: @functor, glorot_uniform` (`@functor`: see Flux.@layer below)
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

function rrule(::typeof(my_matmul), W::Matrix, X::Matrix, B::Matrix)
    y = my_matmul(W, X, B)
    RRULE_CALLS[] += 1  # the post printed "==========Using rrule with fixed random feedback weights=========="
    function times_pullback(ΔΩ)
        ∂W = @thunk(ΔΩ * X')
        ∂X = @thunk(B' * ΔΩ) # Use random feedback weight matrix B
        return (NoTangent(), ∂W, ∂X, NoTangent())
    end
    return y, times_pullback
end
