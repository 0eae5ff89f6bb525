# Stub Vivado commands, for running a generated build script in plain tclsh:
#
#   FF_STUB_LOG=calls.jsonl FF_STUB_WORK=dir tclsh vivado_stub.tcl build.tcl
#
# Every Vivado command the build scripts use is defined here with the options and the number
# of positional arguments the Vivado Tcl command reference gives for it. A call with an unknown
# option, an option without its value, or a wrong argument count is an error, as is any
# command that is not defined (tclsh: "invalid command name"). Each call is logged as one JSON
# object per line: {"cmd": ..., "opts": {...}, "args": [...]}, for the test to check the
# design (ports, addresses, properties) the script builds.
#
# The stubs return plausible objects (the names they were given), so that nested calls such
# as [get_bd_pins ps/FCLK_CLK0] work, and they create the files a real run would leave (the
# bitstream, the hardware handoff) so the script's export step runs too.

set ::ff_log [open $::env(FF_STUB_LOG) w]
set ::ff_work $::env(FF_STUB_WORK)
file mkdir $::ff_work

proc ff_json {s} {
    return "\"[string map [list \\ \\\\ \" \\\" \n \\n \t \\t] $s]\""
}

# ff_call NAME ARGS VALUED FLAGS MIN MAX: check a call, log it, return {opts-dict positionals}.
proc ff_call {name arglist valued flags min max} {
    set pos {}
    set opts [dict create]
    for {set i 0} {$i < [llength $arglist]} {incr i} {
        set a [lindex $arglist $i]
        if {[string index $a 0] eq "-" && ![string is double -strict $a]} {
            if {$a in $valued} {
                incr i
                if {$i >= [llength $arglist]} { error "$name: option $a needs a value" }
                dict set opts $a [lindex $arglist $i]
            } elseif {$a in $flags} {
                dict set opts $a 1
            } else {
                error "$name: unknown option $a"
            }
        } else {
            lappend pos $a
        }
    }
    set n [llength $pos]
    if {$n < $min || ($max >= 0 && $n > $max)} {
        error "$name: $n positional argument(s) ($pos); expected $min..$max"
    }
    set o {}
    dict for {k v} $opts { lappend o "[ff_json $k]: [ff_json $v]" }
    set p {}
    foreach a $pos { lappend p [ff_json $a] }
    puts $::ff_log "{\"cmd\": [ff_json $name], \"opts\": {[join $o {, }]}, \"args\": \[[join $p {, }]\]}"
    flush $::ff_log
    return [list $opts $pos]
}

proc ff_need {name opts opt} {
    if {![dict exists $opts $opt]} { error "$name: option $opt is required here" }
}

# A block-design object path: cell, or cell/pin, or cell/*/segment.
proc ff_path {name p} {
    if {![regexp {^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z0-9_*]+)*$} $p]} {
        error "$name: malformed object path '$p'"
    }
    return $p
}

proc version {args} {
    ff_call version $args {} {-short -quiet -verbose} 0 0
    return 2023.2
}

# ---- project -------------------------------------------------------------------------------
proc create_project {args} {
    lassign [ff_call create_project $args {-part -ip_repo_paths} {-force -in_memory -quiet -verbose} 1 2] opts pos
    ff_need create_project $opts -part
    return [lindex $pos 0]
}
proc current_project {args} {
    ff_call current_project $args {} {-quiet -verbose} 0 1
    return fiberflow
}
proc current_fileset {args} {
    ff_call current_fileset $args {} {-constrset -simset -quiet -verbose} 0 1
    return sources_1
}
proc close_project {args} { ff_call close_project $args {} {-delete -quiet -verbose} 0 0 }
proc set_property {args} {
    lassign [ff_call set_property $args {-dict} {-quiet -verbose} 1 3] opts pos
    if {[dict exists $opts -dict]} {
        set d [dict get $opts -dict]
        if {[llength $pos] != 1} { error "set_property -dict: expected 1 object, got $pos" }
        if {[llength $d] % 2} { error "set_property -dict: odd-length list $d" }
        foreach {k v} $d {
            if {![regexp {^CONFIG\.[A-Za-z0-9_]+$} $k]} { error "set_property -dict: bad key $k" }
        }
    } elseif {[llength $pos] != 3} {
        error "set_property: expected name value objects, got $pos"
    }
}
proc get_property {args} {
    lassign [ff_call get_property $args {} {-quiet -verbose -min -max} 2 2] opts pos
    switch -- [lindex $pos 0] {
        PROGRESS { return 100% }
        DIRECTORY { return [file join $::ff_work runs [lindex $pos 1]] }
        SLACK {
            # FF_STUB_WNS / FF_STUB_WHS: the routed design's worst setup / hold slack.
            if {[lindex $pos 1] eq "timing_path_max"} {
                return [expr {[info exists ::env(FF_STUB_WNS)] ? $::env(FF_STUB_WNS) : 0.25}]
            }
            return [expr {[info exists ::env(FF_STUB_WHS)] ? $::env(FF_STUB_WHS) : 0.05}]
        }
        STARTPOINT_PIN { return "fiberflow_bd_i/overlay/inst/core/acc_reg\[7\]/C" }
        ENDPOINT_PIN { return "fiberflow_bd_i/overlay/inst/core/wq_reg\[31\]/D" }
        default { error "get_property: the stub does not know property [lindex $pos 0]" }
    }
}
proc get_board_parts {args} {
    lassign [ff_call get_board_parts $args {-filter -of_objects} {-quiet -verbose -regexp -nocase -latest_file_version -latest_hw_revision} 0 1] opts pos
    set want [lindex $pos 0]
    if {[info exists ::env(FF_STUB_BOARDS)]} {
        # Only these board parts are "installed".
        return [lsearch -all -inline -glob $::env(FF_STUB_BOARDS) $want]
    }
    if {[string first * $want] >= 0} { return {} }
    return $want
}
proc add_files {args} {
    lassign [ff_call add_files $args {-fileset -of_objects -copy_to} {-norecurse -quiet -verbose -scan_for_includes} 1 -1] opts pos
    foreach f [join $pos] {
        if {![file exists $f]} { error "add_files: no such file $f" }
    }
}
proc update_compile_order {args} {
    ff_call update_compile_order $args {-fileset} {-quiet -verbose} 0 0
}
proc get_files {args} {
    lassign [ff_call get_files $args {-of_objects -filter -compile_order -used_in} {-quiet -verbose -all -regexp -nocase} 0 1] opts pos
    set pat [lindex $pos 0]
    if {[string match *.bd $pat]} {
        return [file join $::ff_work bd $pat]
    }
    if {[string match *.hwh $pat]} {
        ff_need get_files $opts -of_objects
        set f [file join $::ff_work hw_handoff $pat]
        file mkdir [file dirname $f]
        set fh [open $f w]; puts $fh "<EDKSYSTEM/>"; close $fh
        return $f
    }
    error "get_files: the stub does not know pattern '$pat'"
}

# ---- IP and block design -------------------------------------------------------------------
proc get_ipdefs {args} {
    lassign [ff_call get_ipdefs $args {-filter -of_objects} {-all -quiet -verbose -regexp -nocase -name} 0 1] opts pos
    ff_need get_ipdefs $opts -filter
    if {![regexp {^VLNV =~ xilinx\.com:ip:([a-z0-9_]+):\*$} [dict get $opts -filter] -> ip]} {
        error "get_ipdefs: unexpected filter [dict get $opts -filter]"
    }
    set known {processing_system7 zynq_ultra_ps_e smartconnect proc_sys_reset}
    if {$ip ni $known} { error "get_ipdefs: the stub has no IP $ip" }
    return [list xilinx.com:ip:$ip:1.0 xilinx.com:ip:$ip:1.1]
}
proc create_bd_design {args} {
    lassign [ff_call create_bd_design $args {-dir -bdsource} {-quiet -verbose} 1 1] opts pos
    return [lindex $pos 0]
}
proc create_bd_cell {args} {
    lassign [ff_call create_bd_cell $args {-type -vlnv -reference} {-quiet -verbose} 1 1] opts pos
    ff_need create_bd_cell $opts -type
    switch -- [dict get $opts -type] {
        ip {
            ff_need create_bd_cell $opts -vlnv
            if {![regexp {^xilinx\.com:ip:[a-z0-9_]+:[0-9.]+$} [dict get $opts -vlnv]]} {
                error "create_bd_cell: malformed VLNV [dict get $opts -vlnv]"
            }
        }
        module { ff_need create_bd_cell $opts -reference }
        default { error "create_bd_cell: bad -type [dict get $opts -type]" }
    }
    return [ff_path create_bd_cell [lindex $pos 0]]
}
proc apply_bd_automation {args} {
    lassign [ff_call apply_bd_automation $args {-rule -config -dict -opts} {-quiet -verbose} 1 1] opts pos
    ff_need apply_bd_automation $opts -rule
    if {[llength [dict get $opts -config]] % 2} { error "apply_bd_automation: odd -config list" }
}
foreach getter {get_bd_cells get_bd_pins get_bd_intf_pins get_bd_addr_spaces get_bd_addr_segs} {
    proc $getter {args} [string map [list @NAME $getter] {
        lassign [ff_call @NAME $args {-filter -of_objects} {-quiet -verbose -hierarchical -regexp -excluded -addressables -addressing} 0 1] opts pos
        if {[llength $pos] == 0} { error "@NAME: the stub needs an object path" }
        set p [ff_path @NAME [lindex $pos 0]]
        if {"@NAME" ni {get_bd_cells} && [string first / $p] < 0} {
            error "@NAME: '$p' is not cell/pin"
        }
        return $p
    }]
}
proc connect_bd_intf_net {args} {
    ff_call connect_bd_intf_net $args {-intf_net -boundary_type} {-quiet -verbose} 2 2
}
proc connect_bd_net {args} {
    ff_call connect_bd_net $args {-net -boundary_type} {-quiet -verbose} 2 -1
}
proc assign_bd_address {args} {
    lassign [ff_call assign_bd_address $args {-target_address_space -offset -range -dict -import_from_file -export_to_file -export_gui_to_file} {-quiet -verbose -force -external -boundary} 0 1] opts pos
    if {[dict exists $opts -offset] && ![regexp {^0x[0-9A-Fa-f]+$} [dict get $opts -offset]]} {
        error "assign_bd_address: bad -offset [dict get $opts -offset]"
    }
    if {[dict exists $opts -range] && ![regexp {^(0x[0-9A-Fa-f]+|[0-9]+[KMG])$} [dict get $opts -range]]} {
        error "assign_bd_address: bad -range [dict get $opts -range]"
    }
}
proc validate_bd_design {args} { ff_call validate_bd_design $args {-design} {-force -quiet -verbose} 0 0 }
proc save_bd_design {args} { ff_call save_bd_design $args {} {-quiet -verbose} 0 1 }
proc generate_target {args} {
    ff_call generate_target $args {} {-force -quiet -verbose} 2 2
}
proc make_wrapper {args} {
    lassign [ff_call make_wrapper $args {-files -fileset} {-top -testbench -inst_template -import -force -quiet -verbose} 0 0] opts pos
    ff_need make_wrapper $opts -files
    set f [file join $::ff_work hdl fiberflow_bd_wrapper.v]
    file mkdir [file dirname $f]
    set fh [open $f w]; puts $fh "module fiberflow_bd_wrapper(); endmodule"; close $fh
    return $f
}

# ---- runs and reports ----------------------------------------------------------------------
proc get_runs {args} {
    lassign [ff_call get_runs $args {-filter -of_objects} {-quiet -verbose -regexp -nocase} 0 1] opts pos
    return [lindex $pos 0]
}
proc launch_runs {args} {
    lassign [ff_call launch_runs $args {-jobs -to_step -host -remote_cmd -scripts_only -lsf_cmd -pre_launch_script -post_launch_script} {-next_step -quiet -verbose -force} 1 -1] opts pos
    if {[dict exists $opts -jobs] && ![string is integer -strict [dict get $opts -jobs]]} {
        error "launch_runs: -jobs [dict get $opts -jobs] is not a number"
    }
    if {[lindex $pos 0] eq "impl_1"} {
        set dir [file join $::ff_work runs impl_1]
        file mkdir $dir
        set fh [open [file join $dir fiberflow_bd_wrapper.bit] w]; puts $fh bit; close $fh
    }
}
proc wait_on_run {args} { ff_call wait_on_run $args {-timeout} {-quiet -verbose} 1 1 }
proc open_run {args} { ff_call open_run $args {-name -pr_config} {-quiet -verbose} 1 1 }
proc report_utilization {args} {
    ff_call report_utilization $args {-file -name -cells -pblocks} {-hierarchical -append -quiet -verbose} 0 0
}
proc get_timing_paths {args} {
    lassign [ff_call get_timing_paths $args {-delay_type -max_paths -nworst -from -to -through -group -slack_lesser_than -slack_greater_than} {-setup -hold -unique_pins -sort_by_group -quiet -verbose} 0 0] opts pos
    set type [expr {[dict exists $opts -delay_type] ? [dict get $opts -delay_type] : "max"}]
    if {$type ni {max min}} { error "get_timing_paths: the stub knows -delay_type max or min" }
    return timing_path_$type
}
proc report_timing {args} {
    lassign [ff_call report_timing $args {-file -name -delay_type -max_paths -nworst -from -to -through -group -of_objects} {-setup -hold -unique_pins -sort_by_group -append -quiet -verbose} 0 0] opts pos
    if {[dict exists $opts -file]} {
        set fh [open [dict get $opts -file] w]; puts $fh "Timing Report (stub)"; close $fh
    }
}
proc report_timing_summary {args} {
    ff_call report_timing_summary $args {-file -name -max_paths -delay_type} {-append -quiet -verbose} 0 0
}

# ---- run the script under test ---------------------------------------------------------------
set ff_script [lindex $argv 0]
source $ff_script
close $::ff_log
