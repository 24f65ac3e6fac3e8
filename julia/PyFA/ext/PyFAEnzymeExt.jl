# PyFA's rules under Enzyme. Enzyme ignores ChainRulesCore rules, so without this extension
# `Flux.gradient(f, AutoEnzyme(), m)` and `Flux.gradient(f, Duplicated(m))` would differentiate
# `weight * x` inside `fa_matmul` (and `conv` inside `fa_conv`, the products of a DFAChain)
# themselves: plain backprop, with no error (the forum bug again).
#
# The reverse rules below run PyFA's own `ChainRulesCore.rrule`s, so the maths lives in one
# place. They are written with `EnzymeRules` rather than `Enzyme.@import_rrule`: that macro is
# defined in Enzyme's ChainRulesCore extension, which Julia may load after this one when both
# become loadable at once (equal trigger counts load in registration order), and a macro that is
# not there yet would make this extension fail to load, i.e. backprop again. NNlib writes its
# Enzyme rules the same way, on Enzyme's maintainers' advice.
module PyFAEnzymeExt

using ChainRulesCore: ChainRulesCore, AbstractZero, unthunk
using Enzyme: EnzymeRules, Annotation, Const, make_zero
using PyFA: fa_matmul, fa_conv, dfa_matmul, dfa_conv, dfa_output, feedback_matrix, _check_input,
            _check_mode, _conv_dims

# No derivative through them, as ChainRulesCore.@non_differentiable says for Zygote. Enzyme
# takes the result of an `inactive` function for constant memory, so each returns a value that
# aliases none of its arguments: `nothing` for the checks, a new DenseConvDims, and a new array
# from `feedback_matrix` in every mode (the rules' pullbacks use the aliasing
# `PyFA._feedback_matrix`, which runs only inside the rules below, never in differentiated code).
EnzymeRules.inactive(::typeof(feedback_matrix), args...) = true
EnzymeRules.inactive(::typeof(_check_input), args...) = true
EnzymeRules.inactive(::typeof(_check_mode), args...) = true
EnzymeRules.inactive(::typeof(_conv_dims), args...) = true

# One pair of methods per function with a rule; all run that function's ChainRulesCore.rrule.
EnzymeRules.augmented_primal(config::EnzymeRules.RevConfig, f::Const{typeof(fa_matmul)},
                             ::Type{<:Annotation}, args::Annotation...) =
    _augmented_primal(config, f, args)
EnzymeRules.reverse(config::EnzymeRules.RevConfig, ::Const{typeof(fa_matmul)},
                    ::Type{<:Annotation}, tape, args::Annotation...) = _reverse(tape, args)

EnzymeRules.augmented_primal(config::EnzymeRules.RevConfig, f::Const{typeof(fa_conv)},
                             ::Type{<:Annotation}, args::Annotation...) =
    _augmented_primal(config, f, args)
EnzymeRules.reverse(config::EnzymeRules.RevConfig, ::Const{typeof(fa_conv)},
                    ::Type{<:Annotation}, tape, args::Annotation...) = _reverse(tape, args)

EnzymeRules.augmented_primal(config::EnzymeRules.RevConfig, f::Const{typeof(dfa_matmul)},
                             ::Type{<:Annotation}, args::Annotation...) =
    _augmented_primal(config, f, args)
EnzymeRules.reverse(config::EnzymeRules.RevConfig, ::Const{typeof(dfa_matmul)},
                    ::Type{<:Annotation}, tape, args::Annotation...) = _reverse(tape, args)

EnzymeRules.augmented_primal(config::EnzymeRules.RevConfig, f::Const{typeof(dfa_conv)},
                             ::Type{<:Annotation}, args::Annotation...) =
    _augmented_primal(config, f, args)
EnzymeRules.reverse(config::EnzymeRules.RevConfig, ::Const{typeof(dfa_conv)},
                    ::Type{<:Annotation}, tape, args::Annotation...) = _reverse(tape, args)

EnzymeRules.augmented_primal(config::EnzymeRules.RevConfig, f::Const{typeof(dfa_output)},
                             ::Type{<:Annotation}, args::Annotation...) =
    _augmented_primal(config, f, args)
EnzymeRules.reverse(config::EnzymeRules.RevConfig, ::Const{typeof(dfa_output)},
                    ::Type{<:Annotation}, tape, args::Annotation...) = _reverse(tape, args)

function _augmented_primal(config, f::Const, args::Tuple)
    _check_width(config)
    # The pullback reads its arguments (weight in mode :bp, sign(W) in :usf, x for ∂weight...):
    # copies of the arrays Enzyme says may be overwritten before the reverse pass.
    primals = ntuple(i -> _kept(config, args[i], i + 1), length(args))
    y, pullback = ChainRulesCore.rrule(f.val, primals...)
    shadow = EnzymeRules.needs_shadow(config) ? make_zero(y) : nothing
    primal = EnzymeRules.needs_primal(config) ? y : nothing
    return EnzymeRules.AugmentedReturn(primal, shadow, (shadow, pullback))
end

function _reverse(tape, args::Tuple)
    shadow, pullback = tape
    if shadow !== nothing
        tangents = pullback(shadow)  # (NoTangent() for the function, then one per argument)
        foreach(_accumulate!, args, Base.tail(tangents))
        fill!(shadow, zero(eltype(shadow)))  # the output's cotangent is used up
    end
    return map(_ -> nothing, args)  # everything was accumulated in place
end

_kept(config, a::Annotation{<:AbstractArray}, i::Int) =
    EnzymeRules.overwritten(config)[i] ? copy(a.val) : a.val
_kept(config, a::Annotation, i::Int) = a.val  # a Symbol, a DenseConvDims: immutable

function _accumulate!(a::Annotation, ∂)
    a isa Const && return nothing
    d = unthunk(∂)
    d isa AbstractZero && return nothing  # NoTangent(): fa's feedback, x under DFA, cdims, mode
    # With runtime activity, an argument Enzyme found inactive carries its own value as shadow.
    a.dval === a.val && return nothing
    a.dval .+= d
    return nothing
end

function _check_width(config)
    w = EnzymeRules.width(config)
    w == 1 || throw(ArgumentError(string(
        "PyFA's Enzyme rules handle one cotangent at a time (width 1), got width ", w,
        ": differentiate one direction at a time")))
    return nothing
end

end # module PyFAEnzymeExt
