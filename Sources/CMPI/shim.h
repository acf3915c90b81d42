#ifndef CMPI_SHIM_H
#define CMPI_SHIM_H

#include <mpi.h>

/*
 * OpenMPI defines its predefined handles as macros that cast the address of
 * a global object (for example MPI_COMM_WORLD is
 * ((MPI_Comm)&ompi_mpi_comm_world)), which Swift cannot import. Each one
 * gets a static inline accessor named cmpi_<name>, generated from the single
 * list below, so adding a handle is one line.
 */
#define CMPI_HANDLES(X)                                 \
    X(MPI_Comm, comm_world, MPI_COMM_WORLD)             \
    X(MPI_Comm, comm_self, MPI_COMM_SELF)               \
    X(MPI_Datatype, float, MPI_FLOAT)                   \
    X(MPI_Datatype, double, MPI_DOUBLE)                 \
    X(MPI_Datatype, int32, MPI_INT32_T)                 \
    X(MPI_Datatype, int64, MPI_INT64_T)                 \
    X(MPI_Datatype, byte, MPI_BYTE)                     \
    X(MPI_Op, sum, MPI_SUM)                             \
    X(MPI_Op, max, MPI_MAX)                             \
    X(MPI_Op, min, MPI_MIN)                             \
    X(MPI_Errhandler, errors_return, MPI_ERRORS_RETURN) \
    X(MPI_Info, info_null, MPI_INFO_NULL)               \
    X(MPI_Win, win_null, MPI_WIN_NULL)

#define CMPI_ACCESSOR(type, name, value) \
    static inline type cmpi_##name(void) { return value; }
CMPI_HANDLES(CMPI_ACCESSOR)
#undef CMPI_ACCESSOR

/*
 * Pointer constants, not handles. MPI_STATUSES_IGNORE is a null pointer in
 * OpenMPI but (MPI_Status *)1 in MPICH, so Swift must not pass nil for it.
 */
static inline void *cmpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *cmpi_statuses_ignore(void)
{
    return MPI_STATUSES_IGNORE;
}

/* Integer constants from anonymous enums or macros, fixed as C int. */
static inline int cmpi_comm_type_shared(void)
{
    return MPI_COMM_TYPE_SHARED;
}
static inline int cmpi_mode_nocheck(void) { return MPI_MODE_NOCHECK; }

#endif
